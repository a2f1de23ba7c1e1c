"""Read the dataset stage's Megatron blend file and check it against its tokenizer.

The blend (``logos-megatron-blend/1``) names, per split, the ``.bin/.idx`` prefixes written by
megatron-core's ``IndexedDatasetBuilder``, their mixture weights and domains, plus the tokenizer the
tokens came from (either kind, native or extended: ``grammar.tokenizer.load_tokenizer``). Paths are
relative to the blend file's directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.errors import TrainingError

BLEND_FORMAT = "logos-megatron-blend/1"
SPLITS = ("train", "valid", "test")


class BlendError(TrainingError, ValueError):
    """The blend file is malformed, points at missing files, or disagrees with its tokenizer."""


@dataclass(frozen=True)
class SplitBlend:
    prefixes: tuple[str, ...]  # absolute path prefixes of .bin/.idx pairs
    weights: tuple[float, ...]
    domains: tuple[str, ...]

    def megatron_blend(self) -> tuple[list[str], list[float]]:
        return list(self.prefixes), list(self.weights)


@dataclass(frozen=True)
class Blend:
    path: Path
    tokenizer_dir: Path
    tokenizer_hash: str
    vocab_size: int
    eod_id: int
    pad_id: int
    dtype: str
    splits: dict[str, SplitBlend]
    dataset: dict[str, Any]
    bos_id: int | None = None  # None: the blend predates the field, or the tokenizer has no bos
    tokenizer_kind: str | None = None  # "native" | "extended"; None: the blend predates the field

    def split(self, name: str) -> SplitBlend:
        if name not in self.splits:
            raise BlendError(f"{self.path}: no {name!r} split (has {', '.join(self.splits)})")
        return self.splits[name]

    def lineage(self) -> dict[str, Any]:
        """What a checkpoint records about the data it was trained on."""
        return {
            "blend": str(self.path),
            "dataset": self.dataset,
            "tokenizer_hash": self.tokenizer_hash,
            "train": {"domains": list(self.splits["train"].domains), "weights": list(self.splits["train"].weights)},
        }


def _require(mapping: dict, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in mapping:
        raise BlendError(f"{where}: missing key {key!r}")
    value = mapping[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BlendError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _read_split(raw: Any, base: Path, where: str) -> SplitBlend:
    if not isinstance(raw, dict):
        raise BlendError(f"{where}: expected a mapping")
    prefixes = _require(raw, "prefixes", where, list)
    weights = _require(raw, "weights", where, list)
    domains = _require(raw, "domains", where, list)
    if not prefixes or not len(prefixes) == len(weights) == len(domains):
        raise BlendError(f"{where}: prefixes, weights and domains must be non-empty and of equal length "
                         f"({len(prefixes)}, {len(weights)}, {len(domains)})")
    if any(not isinstance(w, int | float) or isinstance(w, bool) or w <= 0 for w in weights):
        raise BlendError(f"{where}.weights: every weight must be a positive number, got {weights}")
    if len(set(domains)) != len(domains):
        raise BlendError(f"{where}.domains: duplicate domain in {domains}")
    resolved = []
    for prefix in prefixes:
        path = (base / prefix).resolve()
        for suffix in (".bin", ".idx"):
            if not Path(f"{path}{suffix}").is_file():
                raise BlendError(f"{where}: prefix {prefix!r} has no {path}{suffix}")
        resolved.append(str(path))
    return SplitBlend(tuple(resolved), tuple(float(w) for w in weights), tuple(str(d) for d in domains))


def read_blend(path: str | Path) -> Blend:
    path = Path(path).resolve()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise BlendError(f"blend file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise BlendError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != BLEND_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise BlendError(f"{path}: format must be {BLEND_FORMAT!r}, found {found!r}")
    where = str(path)
    tokenizer = _require(raw, "tokenizer", where, dict)
    splits_raw = _require(raw, "splits", where, dict)
    for name in splits_raw:
        if name not in SPLITS:
            raise BlendError(f"{where}.splits: unknown split {name!r} (expected {', '.join(SPLITS)})")
    if "train" not in splits_raw:
        raise BlendError(f"{where}.splits: a 'train' split is required")
    base = path.parent
    return Blend(
        path=path,
        tokenizer_dir=(base / _require(tokenizer, "path", f"{where}.tokenizer", str)).resolve(),
        tokenizer_hash=_require(tokenizer, "content_hash", f"{where}.tokenizer", str),
        vocab_size=_require(tokenizer, "vocab_size", f"{where}.tokenizer", int),
        eod_id=_require(tokenizer, "eod_id", f"{where}.tokenizer", int),
        pad_id=_require(tokenizer, "pad_id", f"{where}.tokenizer", int),
        dtype=_require(raw, "dtype", where, str),
        splits={name: _read_split(s, base, f"{where}.splits.{name}") for name, s in splits_raw.items()},
        dataset=raw.get("dataset") or {},
        bos_id=tokenizer.get("bos_id"),
        tokenizer_kind=tokenizer.get("kind"),
    )


def load_tokenizer(blend: Blend):
    """The blend's tokenizer (either kind); fails unless its content hash, size and special ids match the blend."""
    from grammar.errors import GrammarError
    from grammar.tokenizer import load_tokenizer as load_saved_tokenizer

    try:
        tokenizer = load_saved_tokenizer(blend.tokenizer_dir)
    except (OSError, GrammarError, KeyError, json.JSONDecodeError) as exc:
        raise BlendError(f"{blend.path}: cannot load tokenizer {blend.tokenizer_dir}: {exc}") from None
    mismatches = [
        f"{name}: blend says {expected!r}, tokenizer has {actual!r}"
        for name, expected, actual in (
            ("content_hash", blend.tokenizer_hash, tokenizer.content_hash),
            ("vocab_size", blend.vocab_size, tokenizer.vocab_size),
            ("eod_id", blend.eod_id, tokenizer.eod_id),
            ("pad_id", blend.pad_id, tokenizer.pad_id),
            ("bos_id", blend.bos_id, tokenizer.bos_id),
            ("kind", blend.tokenizer_kind, tokenizer.kind),
        )
        if expected != actual and not (name in ("bos_id", "kind") and expected is None)
    ]
    if mismatches:
        raise BlendError(f"{blend.path}: tokenizer {blend.tokenizer_dir} does not match the blend: "
                         + "; ".join(mismatches))
    return tokenizer
