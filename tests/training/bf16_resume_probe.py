"""The bf16 resume path of the GPU run, on CPU, in a process of its own (it initialises torch.distributed
and megatron's parallel state, which must not leak into the pytest process):

    python tests/training/bf16_resume_probe.py WORKDIR      -> one JSON line on stdout

The configuration refuses bf16 without a GPU (``Runtime.detect``), but megatron-core's bf16 machinery
runs on CPU: bf16 parameters behind ``Float16Module``, ``DistributedDataParallel`` with the distributed
optimizer over torch's AdamW (fp32 main parameters and moments), and gradient buckets as the trainer
gets them on a GPU (``overlap_grad_reduce``; small buckets here so that the tiny model has several,
padded at their ends as megatron pads them). For each optimizer checkpoint format: 3 steps, an
asynchronous save with the project's ``CheckpointSaver``, 2 more steps *before* the save is waited for
(what a run does after an async save: they change every tensor the save read), then a fresh stack
loads the checkpoint and takes the same 2 steps. Reported: the loaded state against a copy taken at
the save (main parameters, moments, Adam steps, bf16 weights), and both runs' last 2 steps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.training.gpu_probe import VOCAB, init_single_process, tiny_config, train_step  # noqa: E402

BUCKET_SIZE = 20_000  # parameters: the tiny model (~170k) gets several buckets


def build_bf16_stack(config, seed: int):
    import torch
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
    from megatron.core.transformer.module import Float16Module

    from training.model import Runtime, build_model

    runtime = Runtime(cuda=False, bf16=True, transformer_impl="local", sequence_parallel=False)
    torch.manual_seed(seed)
    inner = build_model(config, runtime, VOCAB)
    module = Float16Module(inner.config, inner)  # as the trainer wraps a bf16 model
    model = DistributedDataParallel(config=module.config, module=module, ddp_config=DistributedDataParallelConfig(
        grad_reduce_in_fp32=True, use_distributed_optimizer=True, overlap_grad_reduce=True,
        bucket_size=BUCKET_SIZE))
    optimizer = get_megatron_optimizer(OptimizerConfig(
        optimizer="adam", lr=1e-2, min_lr=1e-3, weight_decay=0.1, clip_grad=1.0, bf16=True,
        params_dtype=torch.bfloat16, use_distributed_optimizer=True), [model])
    scheduler = OptimizerParamScheduler(optimizer, init_lr=1e-2, max_lr=1e-2, min_lr=1e-3, lr_warmup_steps=0,
                                        lr_decay_steps=10, lr_decay_style="cosine", start_wd=0.1, end_wd=0.1,
                                        wd_incr_steps=10, wd_incr_style="constant")
    return module, model, optimizer, scheduler


def snapshot(module, optimizer) -> dict[str, list]:
    """Copies of everything a resumed step depends on, in a fixed order."""
    distributed = optimizer.chained_optimizers[0]
    adam = distributed.optimizer
    mains = [p for group in adam.param_groups for p in group["params"]]
    return {
        "main_params": [p.detach().clone() for p in mains],
        "exp_avg": [adam.state[p]["exp_avg"].clone() for p in mains],
        "exp_avg_sq": [adam.state[p]["exp_avg_sq"].clone() for p in mains],
        "adam_steps": [float(adam.state[p]["step"]) for p in mains],
        "bf16_weights": [p.detach().clone() for p in module.parameters()],
    }


def same(a: dict[str, list], b: dict[str, list]) -> dict[str, bool]:
    import torch

    return {key: all((torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y)
                     for x, y in zip(a[key], b[key], strict=True)) for key in a}


def roundtrip(work: Path, optimizer_format: str) -> dict[str, Any]:
    import torch

    from training.checkpoint import CheckpointSaver, find_checkpoint, load_checkpoint
    from training.config import config_to_dict

    config = tiny_config(precision="bf16")
    module, model, optimizer, scheduler = build_bf16_stack(config, seed=1)
    buffer = model.buffers[0]
    for step in range(3):
        train_step(model, optimizer, scheduler, step)
    at_save = snapshot(module, optimizer)
    saver = CheckpointSaver(optimizer_format, async_save=True)
    saver.save(work / optimizer_format, 3, module, optimizer, scheduler, {"config": config_to_dict(config)})
    continued = [train_step(model, optimizer, scheduler, step) for step in (3, 4)]  # while the save is in flight
    saver.wait()
    module2, model2, optimizer2, scheduler2 = build_bf16_stack(config, seed=2)
    loaded_step = load_checkpoint(find_checkpoint(work / optimizer_format), module2, optimizer2, scheduler2)
    loaded = snapshot(module2, optimizer2)
    resumed = [train_step(model2, optimizer2, scheduler2, step) for step in (3, 4)]
    return {
        "weights_dtype": str(next(module.parameters()).dtype).removeprefix("torch."),
        "main_params_dtype": str(at_save["main_params"][0].dtype).removeprefix("torch."),
        "buckets": len(buffer.buckets), "bucket_end_padding": buffer.numel - buffer.numel_unpadded,
        "loaded_step": loaded_step, "loaded_equal_at_save": same(at_save, loaded),
        "continued_losses": continued, "resumed_losses": resumed,
        "state_equal_after": same(snapshot(module, optimizer), snapshot(module2, optimizer2)),
        "moved_after_save": not torch.equal(at_save["main_params"][0], snapshot(module, optimizer)["main_params"][0]),
    }


def main(workdir: str) -> None:
    init_single_process()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(json.dumps({fmt: roundtrip(work, fmt) for fmt in ("fully_reshardable", "dp_reshardable")}))


if __name__ == "__main__":  # the checkpoint writer starts processes: the module must import safely
    main(*sys.argv[1:])
