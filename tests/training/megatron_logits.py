"""Megatron's logits for given token ids, from checkpoints loaded as TP=1/PP=1 float32 models.

Run as a subprocess by the export tests (it initialises torch.distributed and megatron's parallel
state, which must not leak into the pytest process):
``python tests/training/megatron_logits.py OUT.pt IDS.json CHECKPOINT [CHECKPOINT ...]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from training.hf_export import load_megatron_model


def main(out: str, ids_path: str, *checkpoints: str) -> None:
    ids = torch.tensor(json.loads(Path(ids_path).read_text()))
    positions = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
    logits = {}
    for checkpoint in checkpoints:
        model, _, vocab_size = load_megatron_model(checkpoint)
        with torch.no_grad():
            logits[checkpoint] = model(input_ids=ids, position_ids=positions, attention_mask=None)[..., :vocab_size]
    torch.save(logits, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
