"""A workflow's tokenizer: the ``tokenizer:`` section, resolved to a saved directory under the home.

    tokenizer: {kind: native}                                  # the built-in grammar vocabulary (default)
    tokenizer: {kind: extended, base: path/to/llama-tokenizer}  # a base LLM's tokenizer + the grammar tags

The directory is ``<home>/tokenizers/<hash>`` (the tokenizer's content hash), written once. Ingest
writes ids with it, and the path (hence the hash) is an input of the ingest stage, so a different
tokenizer makes different shards and never reuses cached ones. Everything downstream takes the
tokenizer of its inputs (``pipeline.versions.stage``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.options import ConfigError

TOKENIZER_KINDS = ("native", "extended")


@dataclass
class TokenizerSettings:
    kind: str = "native"  # native: the grammar vocabulary; extended: `base` plus the grammar's tags
    base: str | None = None  # extended: a local HF tokenizer directory (Llama-3, Qwen3); relative to the config
    material_tokens: bool = True  # extended: the crystal-grammar tokens as single added tokens
    eod_token: str | None = None  # extended: the document end (default <|end_of_text|>, <|endoftext|>, eos)


def check_tokenizer(settings: TokenizerSettings) -> None:
    """Cross-field checks of the ``tokenizer`` section, each naming its key."""
    if settings.kind not in TOKENIZER_KINDS:
        raise ConfigError(f"tokenizer.kind: must be one of {', '.join(TOKENIZER_KINDS)}, not {settings.kind!r}")
    if settings.kind == "extended" and not settings.base:
        raise ConfigError("tokenizer.base: an extended tokenizer needs the base tokenizer's directory")
    if settings.kind == "native" and settings.base:
        raise ConfigError("tokenizer.base: only an extended tokenizer has a base (set tokenizer.kind: extended)")


def resolve_tokenizer(settings: TokenizerSettings, base_dir: Path, home: str | Path) -> str:
    """Build (or find) the workflow's tokenizer and return its saved directory under ``home``."""
    from grammar.errors import GrammarError

    if settings.kind == "native":
        from grammar.tokenizer import default_tokenizer

        tokenizer = default_tokenizer()
    else:
        from grammar.hf_extend import ExtendedTokenizer

        base = Path(settings.base or "")
        base = base if base.is_absolute() else (base_dir / base).resolve()
        try:
            tokenizer = ExtendedTokenizer.build(base, material_tokens=settings.material_tokens,
                                                eod_token=settings.eod_token)
        except GrammarError as exc:
            raise ConfigError(f"tokenizer.base: {exc}") from None
    target = Path(home) / "tokenizers" / tokenizer.content_hash.removeprefix("sha256:")[:16]
    if not target.is_dir():
        staging = target.with_name(f".{target.name}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        tokenizer.save(staging)
        staging.rename(target)
    return str(target)
