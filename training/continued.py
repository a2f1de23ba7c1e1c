"""Continued pretraining: the weights a run starts from (``init: {hf: DIR}`` or ``init: {checkpoint: DIR}``).

A run with ``init`` and no checkpoint of its own starts at step 0 from the init checkpoint's weights,
with a fresh optimizer and schedule; once it has saved a checkpoint, resuming wins and ``init`` is
no longer read. ``init.hf`` is imported (``training.hf_import``, with the blend's tokenizer, so the
embedding covers every token of the data) into ``<run_dir>/init/`` by the launcher, once.

Before any rank starts, the launcher checks what would otherwise fail late or, worse, silently: the
init checkpoint's tokenizer must be the blend's (same content hash: the same ids mean the same
tokens), and its vocabulary must cover the blend's tokenizer.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from training.blend import Blend
from training.checkpoint import CheckpointError, CheckpointRef, find_checkpoint
from training.config import TrainConfig
from training.presets import ModelConfig


def check_same_model(saved: dict[str, Any], model: ModelConfig, where: str) -> None:
    """Raise naming every ``model.*`` field in which ``saved`` (a ModelConfig as a mapping) differs."""
    current = {k: v for k, v in dataclasses.asdict(model).items() if k != "name"}
    differences = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
    if differences:
        raise CheckpointError(f"{where} has a different model: "
                              + ", ".join(f"model.{k} {a} there, {b} here" for k, (a, b) in differences.items()))


def init_checkpoint(config: TrainConfig) -> CheckpointRef:
    """The checkpoint ``init`` names (after the launcher imported ``init.hf``)."""
    assert config.init_dir is not None
    ref = find_checkpoint(config.init_dir)
    if ref is None:
        key = "init.hf (imported into it)" if config.init.hf else "init.checkpoint"
        raise CheckpointError(f"{key}: no checkpoint in {config.init_dir}")
    return ref


def prepare_init(config: TrainConfig, blend: Blend) -> CheckpointRef:
    """Launcher side, for a run that starts from ``init``: import ``init.hf`` if not done yet, then check
    the init checkpoint against the blend's tokenizer. Returns the checkpoint."""
    from grammar.tokenizer import TokenizerMismatch, check_same_tokenizer

    assert config.init_dir is not None
    if config.init.hf:
        _import_once(config, blend)
    ref = init_checkpoint(config)
    vocab_size = int(ref.meta.get("vocab_size", 0))
    if vocab_size < blend.vocab_size:
        raise CheckpointError(f"init checkpoint {ref.path} has a vocabulary of {vocab_size} tokens, fewer than the "
                              f"{blend.vocab_size} of the blend's tokenizer {blend.tokenizer_dir}")
    saved_hash = (ref.meta.get("lineage") or {}).get("tokenizer_hash")
    if saved_hash is None:
        raise CheckpointError(f"init checkpoint {ref.path} records no logos tokenizer (an import without "
                              "--tokenizer?): import it with the blend's tokenizer")
    try:
        check_same_tokenizer(blend.tokenizer_hash, saved_hash, first=f"blend {blend.path}",
                             second=f"init checkpoint {ref.path}")
    except TokenizerMismatch as exc:
        raise CheckpointError(str(exc)) from None
    return ref


def _import_once(config: TrainConfig, blend: Blend) -> None:
    from training.hf_import import import_hf

    target = config.init_dir
    assert target is not None and config.init.hf
    ref = find_checkpoint(target) if target.is_dir() else None
    if ref is None:
        from training.hf_mapping import MappingError, model_config_from_hf

        hf_config = Path(config.init.hf) / "config.json"
        try:  # the shape first, so that a wrong model section imports nothing
            shape = model_config_from_hf(json.loads(hf_config.read_text()), str(hf_config))
        except (OSError, json.JSONDecodeError, MappingError) as exc:
            raise CheckpointError(f"init.hf: {exc}") from None
        check_same_model(dataclasses.asdict(shape), config.model, f"init.hf {hf_config}")
        import_hf(config.init.hf, target, tensor=config.parallel.tensor, pipeline=config.parallel.pipeline,
                  tokenizer=blend.tokenizer_dir)
        return
    source = (ref.meta.get("lineage") or {}).get("imported_from")
    if source != str(Path(config.init.hf).resolve()):
        raise CheckpointError(f"{target} holds weights imported from {source}, not init.hf {config.init.hf}: "
                              "remove it to import again")
