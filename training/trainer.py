"""The training loop of one rank: megatron-core model, DDP, optimizer, 1F1B schedule, checkpoints,
metrics. ``training.rank`` sets up the process and runs it."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from training.blend import load_tokenizer, read_blend
from training.checkpoint import CheckpointSaver, load_checkpoint, start_checkpoint
from training.config import TrainConfig, config_to_dict
from training.continued import init_checkpoint
from training.data import MegatronGrammarTokenizer, build_datasets, microbatch_iterator, step_microbatches
from training.metrics import IntervalThroughput, MetricsWriter, mfu, peak_tflops_for, training_flops_per_token
from training.model import Runtime, build_model

RESULT_FILE = "result.json"


def _loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    losses = output_tensor.float().view(-1)
    mask = loss_mask.view(-1).float()
    loss = (losses * mask).sum() / mask.sum()
    # The 1F1B schedule divides the returned loss in place: report a copy.
    return loss, {"lm loss": loss.detach().clone()}


def _forward_step(data_iterator, model):
    from megatron.core import parallel_state

    batch = next(data_iterator) if data_iterator is not None else {}
    first, last = parallel_state.is_pipeline_first_stage(), parallel_state.is_pipeline_last_stage()
    output = model(
        input_ids=batch["tokens"] if first else None,
        position_ids=batch["position_ids"] if first else None,
        attention_mask=None,
        labels=batch["labels"] if last else None,
    )
    return output, partial(_loss_func, batch.get("loss_mask"))


class Trainer:
    def __init__(self, config: TrainConfig, runtime: Runtime) -> None:
        from megatron.core import parallel_state
        from megatron.core.distributed import (
            DistributedDataParallel,
            DistributedDataParallelConfig,
            finalize_model_grads,
        )
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
        from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
        from megatron.core.transformer.module import Float16Module

        self.config, self.runtime = config, runtime
        self.rank = dist.get_rank()
        self.device = torch.device("cuda", torch.cuda.current_device()) if runtime.cuda else torch.device("cpu")
        self.blend = read_blend(config.data.blend)
        tokenizer = MegatronGrammarTokenizer(load_tokenizer(self.blend))
        self.vocab_size = tokenizer.vocab_size
        self.datasets = build_datasets(config, self.blend, tokenizer, cache_dir=Path(config.run_dir) / "data_cache")

        self.module = build_model(config, runtime, self.vocab_size)
        if runtime.bf16:
            self.module = Float16Module(self.module.config, self.module)
        tconfig = self.module.config
        self.model = DistributedDataParallel(
            config=tconfig,
            ddp_config=DistributedDataParallelConfig(
                grad_reduce_in_fp32=True,
                overlap_grad_reduce=runtime.cuda,
                use_distributed_optimizer=config.parallel.distributed_optimizer,
            ),
            module=self.module,
        )
        self.model.broadcast_params()  # DP replicas start identical even if initialisation differed
        o = config.optimizer
        self.optimizer = get_megatron_optimizer(
            OptimizerConfig(
                optimizer="adam", lr=o.lr, min_lr=o.min_lr, weight_decay=o.weight_decay,
                adam_beta1=o.adam_beta1, adam_beta2=o.adam_beta2, adam_eps=o.adam_eps, clip_grad=o.clip_grad,
                bf16=runtime.bf16, params_dtype=torch.bfloat16 if runtime.bf16 else torch.float32,
                use_distributed_optimizer=config.parallel.distributed_optimizer,
            ),
            [self.model],
        )
        warmup = min(o.warmup_steps, max(config.train_steps - 1, 0))
        self.scheduler = OptimizerParamScheduler(
            self.optimizer, init_lr=0.0, max_lr=o.lr, min_lr=o.min_lr, lr_warmup_steps=warmup,
            lr_decay_steps=max(config.train_steps, warmup + 1), lr_decay_style="cosine",
            start_wd=o.weight_decay, end_wd=o.weight_decay, wd_incr_steps=max(config.train_steps, 1),
            wd_incr_style="constant",
        )
        # What Megatron's schedule calls around the microbatches: DP grad sync, and the all-reduce of
        # tied embedding grads between the first and last pipeline stages.
        tconfig.no_sync_func = self.model.no_sync
        tconfig.finalize_model_grads_func = finalize_model_grads
        tconfig.grad_scale_func = self.optimizer.scale_loss
        self.first_stage = parallel_state.is_pipeline_first_stage()
        self.last_stage = parallel_state.is_pipeline_last_stage()
        self.dp_rank = parallel_state.get_data_parallel_rank()
        self.dp_group = parallel_state.get_data_parallel_group()
        self.pp_group = parallel_state.get_pipeline_model_parallel_group()
        self.metrics = MetricsWriter(config.metrics_path) if self.rank == 0 else None
        self.flops_per_token = training_flops_per_token(config.model, config.data.seq_length, self.vocab_size)
        peak = config.logging.peak_tflops
        if peak is None and runtime.cuda:
            peak = peak_tflops_for(torch.cuda.get_device_name())
        self.peak_tflops = peak
        self.saver = CheckpointSaver(config.checkpoint.optimizer_format, config.checkpoint.async_save)

    # --- one schedule pass --------------------------------------------------------------------------

    def _run_schedule(self, dataset: Any, first_sample: int, forward_only: bool) -> float:
        """Run all microbatches of one global batch; returns the mean loss (on every rank)."""
        from megatron.core.pipeline_parallel import get_forward_backward_func

        cfg = self.config
        ranges = step_microbatches(first_sample, cfg, self.dp_rank)
        needs_data = self.first_stage or self.last_stage
        iterator = microbatch_iterator(dataset, ranges, self.device) if needs_data else None
        losses = get_forward_backward_func()(
            forward_step_func=_forward_step, data_iterator=iterator, model=[self.model],
            num_microbatches=len(ranges), seq_length=cfg.data.seq_length,
            micro_batch_size=cfg.data.micro_batch_size, forward_only=forward_only,
        )
        loss = torch.zeros(1, device=self.device)
        if self.last_stage:
            loss += torch.stack([d["lm loss"] for d in losses]).mean()
            dist.all_reduce(loss, group=self.dp_group)
            loss /= dist.get_world_size(self.dp_group)
        # Exactly one stage of each pipeline holds the loss: a sum hands it to every stage.
        dist.all_reduce(loss, group=self.pp_group)
        return float(loss.item())

    def train_step(self, first_sample: int) -> tuple[float, float]:
        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()
        self.scheduler.step(increment=1)  # lr of this step: warmup starts above zero
        loss = self._run_schedule(self.datasets.train, first_sample, forward_only=False)
        _, grad_norm, _ = self.optimizer.step()
        return loss, float(grad_norm) if grad_norm is not None else float("nan")

    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        results = {}
        with torch.no_grad():
            for domain, dataset in self.datasets.valid.items():
                gbs = self.config.data.global_batch_size
                losses = [self._run_schedule(dataset, i * gbs, forward_only=True)
                          for i in range(self.config.logging.eval_iters)]
                results[domain] = sum(losses) / len(losses)
        self.model.train()
        return results

    # --- the run ------------------------------------------------------------------------------------

    def _checkpoint_meta(self, step: int, consumed: int) -> dict[str, Any]:
        return {"step": step, "consumed_samples": consumed, "vocab_size": self.vocab_size,
                "lineage": self.blend.lineage(), "config": config_to_dict(self.config)}

    def _log(self, record: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.write(record)

    def _log_eval(self, step: int) -> dict[str, float]:
        valid = self.evaluate()
        if valid:
            weights = self.datasets.valid_weights
            mean = sum(valid[d] * weights[d] for d in valid) / sum(weights[d] for d in valid)
            self._log({"kind": "valid", "step": step, "valid_loss": valid, "valid_loss_weighted": mean})
        return valid

    def run(self) -> dict[str, Any]:
        cfg = self.config
        gbs, tokens_per_step = cfg.data.global_batch_size, cfg.data.global_batch_size * cfg.data.seq_length
        step, consumed = 0, 0
        ref = start_checkpoint(cfg.checkpoint_dir, cfg.checkpoint.resume, cfg.checkpoint.load)
        if ref is not None:
            step = load_checkpoint(ref, self.module, self.optimizer, self.scheduler)
            consumed = int(ref.meta.get("consumed_samples", step * gbs))
            self._log({"kind": "resume", "step": step, "checkpoint": str(ref.path)})
        elif cfg.init_dir is not None:  # continued pretraining: step 0, these weights, a fresh optimizer
            init = init_checkpoint(cfg)
            load_checkpoint(init, self.module)
            # The weights changed behind the optimizer's back: its fp32 main copies (bf16, distributed
            # optimizer) must follow, or the first step would write the random initialisation back.
            self.optimizer.reload_model_params()
            self._log({"kind": "init", "step": 0, "checkpoint": str(init.path)})
        start_step, start_consumed = step, consumed
        loss, last_saved = float("nan"), ref.path if ref is not None else None
        for note in self.runtime.notes:
            self._log({"kind": "note", "step": step, "note": note})
        # Throughput is averaged over the steps since the last train record (the logging interval),
        # not taken from the logged step alone; checkpoint and evaluation time are left out.
        interval = IntervalThroughput(tokens_per_step)
        end = cfg.train_steps if cfg.stop_at_step is None else min(cfg.stop_at_step, cfg.train_steps)
        while step < end:
            began = time.perf_counter()
            loss, grad_norm = self.train_step(start_consumed + (step - start_step) * gbs)
            if self.runtime.cuda:
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - began
            interval.add(elapsed)
            step, consumed = step + 1, consumed + gbs
            if step % cfg.logging.interval == 0 or step in (cfg.train_steps, end):
                tokens_per_s, step_time, steps_in_interval = interval.take()
                self._log({
                    "kind": "train", "step": step, "loss": loss, "lr": self.scheduler.get_lr(
                        self.optimizer.param_groups[0]), "grad_norm": grad_norm,
                    "step_time_s": step_time, "interval_steps": steps_in_interval,
                    "tokens_per_s": tokens_per_s,
                    "mfu": mfu(tokens_per_s, self.flops_per_token, cfg.parallel.world_size, self.peak_tflops),
                    "consumed_samples": consumed,
                    **({"max_memory_gib": torch.cuda.max_memory_allocated() / 2**30} if self.runtime.cuda else {}),
                })
            if cfg.logging.eval_interval and step % cfg.logging.eval_interval == 0 and step < cfg.train_steps:
                self._log_eval(step)
            if step % cfg.checkpoint.interval == 0 or step in (cfg.train_steps, end):
                last_saved = self.saver.save(cfg.checkpoint_dir, step, self.module, self.optimizer,
                                             self.scheduler, self._checkpoint_meta(step, consumed),
                                             tokenizer_dir=self.blend.tokenizer_dir)
            self.saver.poll()
        valid = self._log_eval(step)
        self.saver.wait()  # the last checkpoint is complete (``latest`` written) before the result
        result = {"final_loss": loss if step > start_step else None, "steps": step,
                  "checkpoint": str(last_saved) if last_saved else None, "valid_loss": valid,
                  "metrics": str(cfg.metrics_path)}
        if self.rank == 0:
            (Path(cfg.run_dir) / RESULT_FILE).write_text(json.dumps(result, indent=1))
        return result
