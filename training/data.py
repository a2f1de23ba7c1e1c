"""Megatron datasets from a blend: the blended train set and one validation set per domain.

``BlendedMegatronDatasetBuilder`` with ``blend_per_split`` builds the train mixture from the blend's
train split (so the domain shares are exactly the recorded weights) and validation from the valid
split. GPTDataset's shuffle is seeded, so sample ``i`` is the same sample in every run and after every
resume; ``step_microbatches`` turns a step number into this rank's sample indices.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.blend import Blend
from training.config import TrainConfig


class MegatronGrammarTokenizer:
    """The dataset's tokenizer (either kind, ``grammar.tokenizer.LogosTokenizer``) as megatron-core's
    datasets see it (``vocab_size``, ``eod``, ``pad``, ``unique_identifiers``); the EOD that ends every
    document is the tokenizer's own (``<eos>`` native, ``<|end_of_text|>`` Llama-3, ``<|endoftext|>`` Qwen)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.vocab_size
        self.eod = tokenizer.eod_id
        self.eos = tokenizer.eod_id
        self.bos = tokenizer.bos_id
        self.pad = tokenizer.pad_id
        # Part of the dataset cache key: a different vocabulary must never reuse cached indices.
        self.unique_identifiers = {"class": f"logos.{tokenizer.kind}", "content_hash": tokenizer.content_hash}

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


@dataclass
class Datasets:
    train: Any
    valid: dict[str, Any]  # domain -> GPTDataset over that domain's valid prefix
    valid_weights: dict[str, float]


def _gpt_config(config: TrainConfig, tokenizer: MegatronGrammarTokenizer, blend_per_split: list,
                cache_dir: Path | None):
    from megatron.core.datasets.gpt_dataset import GPTDatasetConfig

    return GPTDatasetConfig(
        random_seed=config.data.seed,
        sequence_length=config.data.seq_length,
        blend_per_split=blend_per_split,
        tokenizer=tokenizer,
        path_to_cache=str(cache_dir) if cache_dir else None,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        # Attention is causal by construction (attn_mask_type=causal); no per-sample mask needed.
        create_attention_mask=False,
        mmap_bin_files=True,
    )


def _build(config, tokenizer, blend_per_split, sizes, cache_dir):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset

    gpt_config = _gpt_config(config, tokenizer, blend_per_split, cache_dir)
    return BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, gpt_config).build()


def build_datasets(config: TrainConfig, blend: Blend, tokenizer: MegatronGrammarTokenizer,
                   cache_dir: Path | None = None) -> Datasets:
    gbs = config.data.global_batch_size
    train_split = blend.split("train")
    train, _, _ = _build(config, tokenizer, [train_split.megatron_blend(), None, None],
                         [max(config.train_steps, 1) * gbs, 0, 0], cache_dir)
    valid: dict[str, Any] = {}
    weights: dict[str, float] = {}
    if "valid" in blend.splits:
        split = blend.split("valid")
        for prefix, weight, domain in zip(split.prefixes, split.weights, split.domains, strict=True):
            _, valid[domain], _ = _build(config, tokenizer, [None, ([prefix], None), None],
                                         [0, config.logging.eval_iters * gbs, 0], cache_dir)
            weights[domain] = weight
    return Datasets(train=train, valid=valid, valid_weights=weights)


def domain_shares(train_dataset: Any, domains: tuple[str, ...]) -> dict[str, float]:
    """Realised share of each domain among the blended train samples (for checks and logs)."""
    counts = np.bincount(np.asarray(train_dataset.dataset_index), minlength=len(domains))
    return {domain: float(c) / counts.sum() for domain, c in zip(domains, counts, strict=True)}


def step_microbatches(first_sample: int, config: TrainConfig, dp_rank: int) -> list[range]:
    """Sample indices of each microbatch this data-parallel rank runs for one global batch.

    A global batch is samples ``[first_sample, first_sample + GBS)`` split into contiguous DP slices:
    which samples a step sees depends only on how many samples were consumed before it (so a resume
    continues the same order), and the global batch is the same for every DP size.
    """
    mbs, gbs = config.data.micro_batch_size, config.data.global_batch_size
    per_rank = gbs // config.parallel.data
    start = first_sample + dp_rank * per_rank
    return [range(start + m * mbs, start + (m + 1) * mbs) for m in range(per_rank // mbs)]


def collate(dataset: Any, indices: range, device: torch.device) -> dict[str, torch.Tensor]:
    samples = [dataset[i % len(dataset)] for i in indices]
    batch = {key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in
             ("tokens", "labels", "loss_mask", "position_ids")}
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def microbatch_iterator(dataset: Any, ranges: list[range], device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    for indices in ranges:
        yield collate(dataset, indices, device)
