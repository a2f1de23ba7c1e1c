"""Probes of the GPU code paths that run on CPU, in a process of their own (they initialise
torch.distributed and megatron's parallel state, which must not leak into the pytest process):

    python tests/training/gpu_probe.py MODE WORKDIR      -> one JSON line on stdout

Modes:
- ``attention``: ``SDPAttention`` against megatron's ``DotProductAttention`` (module outputs in fp32
  and bf16, causal and with an explicit mask, grouped-query heads) and whole-model logits of the tiny
  Llama built with either core attention and the same weights.
- ``optimizers``: a checkpoint round trip (2 steps, save, load into a fresh model, 1 more step on
  both) with the distributed optimizer over each Adam megatron-core 0.16.1 can return: torch's (what
  imports here), Transformer Engine's ``FusedAdam`` (megatron's import-time names bound to the state
  contract in ``fused_adam_contracts``, as its ``try: from transformer_engine... import FusedAdam``
  would bind them).
- ``extra_state``: a checkpoint written without ``_extra_state`` loaded into a model one of whose
  modules has one (as Transformer Engine's modules do), and back.
- ``apex``: a stand-in ``apex`` package (with ``apex.optimizers.FusedAdam`` = the Apex contract) is put
  into ``sys.modules`` before megatron-core is imported, so megatron sees "Apex without TE" exactly as
  at import time: its spec code picks Apex's ``FusedLayerNorm`` for the final norm and its optimizer
  module picks Apex's ``FusedAdam``. Reports what megatron's own spec does with RMSNorm, what
  ``training.model.layer_spec`` builds, and the optimizer round trip.
"""

from __future__ import annotations

import json
import socket
import sys
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def install_fake_apex() -> None:
    from tests.training.fused_adam_contracts import ApexFusedAdam

    apex = types.ModuleType("apex")
    apex.__path__ = []
    optimizers = types.ModuleType("apex.optimizers")
    optimizers.FusedAdam = ApexFusedAdam
    optimizers.FusedSGD = type("FusedSGD", (), {})
    apex.optimizers = optimizers
    sys.modules.update({"apex": apex, "apex.optimizers": optimizers})


def init_single_process(seed: int = 1234) -> None:
    import torch
    from megatron.core import parallel_state, tensor_parallel

    from training import cpu_compat

    cpu_compat.activate()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    parallel_state.initialize_model_parallel(1, 1)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def tiny_config(**top: Any):
    from training.config import config_from_dict

    return config_from_dict({"model": {"preset": "tiny"}, "data": {"blend": "b.json", "seq_length": 32},
                             "precision": "fp32", **top})


def runtime(impl: str):
    from training.model import Runtime

    return Runtime(cuda=False, bf16=False, transformer_impl=impl, sequence_parallel=False)


VOCAB = 300


# --- attention ----------------------------------------------------------------------------------------

def attention() -> dict[str, Any]:
    import torch
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    from training.attention import SDPAttention
    from training.model import build_model, transformer_config

    config = tiny_config()
    result: dict[str, Any] = {}
    seq, batch, heads, groups, dim = 24, 2, 4, 2, 16
    for dtype in (torch.float32, torch.bfloat16):
        tc = transformer_config(config, runtime("local"))
        tc.bf16 = dtype == torch.bfloat16  # what the softmax of DotProductAttention reads
        local = DotProductAttention(tc, 1, AttnMaskType.causal, "self")
        sdpa = SDPAttention(tc, 1, AttnMaskType.causal, "self")
        gen = torch.Generator().manual_seed(0)
        q = torch.randn(seq, batch, heads, dim, generator=gen).to(dtype)
        k = torch.randn(seq, batch, groups, dim, generator=gen).to(dtype)
        v = torch.randn(seq, batch, groups, dim, generator=gen).to(dtype)
        mask = torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1)
        mask = mask | (torch.rand(seq, seq, generator=gen) < 0.2) & ~torch.eye(seq, dtype=torch.bool)
        name = str(dtype).split(".")[-1]
        reference = DotProductAttention(transformer_config(config, runtime("local")), 1, AttnMaskType.causal, "self")
        for label, m in (("causal", None), ("mask", mask.view(1, 1, seq, seq))):
            a, b = local(q, k, v, m), sdpa(q, k, v, m)
            exact = reference(q.float(), k.float(), v.float(), m)  # fp32 on the same (rounded) inputs
            result[f"{name}_{label}_shape_equal"] = list(a.shape) == list(b.shape) == [seq, batch, heads * dim]
            result[f"{name}_{label}_max_abs_diff"] = float((a.float() - b.float()).abs().max())
            result[f"{name}_{label}_local_error"] = float((a.float() - exact).abs().max())
            result[f"{name}_{label}_sdpa_error"] = float((b.float() - exact).abs().max())
    torch.manual_seed(7)
    local_model = build_model(config, runtime("local"), VOCAB).eval()
    sdpa_model = build_model(config, runtime("sdpa"), VOCAB).eval()
    missing, unexpected = sdpa_model.load_state_dict(local_model.state_dict(), strict=True)
    ids = torch.randint(0, VOCAB, (2, 32), generator=torch.Generator().manual_seed(3))
    positions = torch.arange(32).unsqueeze(0).expand_as(ids)
    with torch.no_grad():
        a = local_model(input_ids=ids, position_ids=positions, attention_mask=None)
        b = sdpa_model(input_ids=ids, position_ids=positions, attention_mask=None)
    layer = sdpa_model.decoder.layers[0]
    result.update({
        "model_logits_max_abs_diff": float((a - b).abs().max()), "model_logits_scale": float(a.abs().max()),
        "sdpa_core_attention": type(layer.self_attention.core_attention).__name__,
        "local_core_attention": type(local_model.decoder.layers[0].self_attention.core_attention).__name__,
        "sdpa_final_norm": type(sdpa_model.decoder.final_layernorm).__name__,
        "same_parameters": not missing and not unexpected,
    })
    return result


# --- optimizer round trips ----------------------------------------------------------------------------

def build_stack(config, seed: int):
    import torch
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    from training.model import build_model

    torch.manual_seed(seed)
    module = build_model(config, runtime("local"), VOCAB)
    model = DistributedDataParallel(config=module.config, module=module, ddp_config=DistributedDataParallelConfig(
        grad_reduce_in_fp32=True, use_distributed_optimizer=True))
    optimizer = get_megatron_optimizer(OptimizerConfig(optimizer="adam", lr=1e-2, min_lr=1e-3, weight_decay=0.1,
                                                       clip_grad=1.0, use_distributed_optimizer=True), [model])
    scheduler = OptimizerParamScheduler(optimizer, init_lr=1e-2, max_lr=1e-2, min_lr=1e-3, lr_warmup_steps=0,
                                        lr_decay_steps=10, lr_decay_style="cosine", start_wd=0.1, end_wd=0.1,
                                        wd_incr_steps=10, wd_incr_style="constant")
    return module, model, optimizer, scheduler


def train_step(model, optimizer, scheduler, step: int) -> float:
    import torch

    gen = torch.Generator().manual_seed(100 + step)
    ids = torch.randint(0, VOCAB, (2, 33), generator=gen)
    positions = torch.arange(32).unsqueeze(0).expand(2, 32)
    model.zero_grad_buffer()
    optimizer.zero_grad()
    scheduler.step(increment=1)
    loss = model(input_ids=ids[:, :-1], position_ids=positions, attention_mask=None, labels=ids[:, 1:]).mean()
    loss.backward()
    model.finish_grad_sync()
    optimizer.step()
    return float(loss)


def _inner(optimizer):
    return optimizer.chained_optimizers[0].optimizer


def _steps(optimizer) -> list[float]:
    inner = _inner(optimizer)
    per_param = [float(s["step"]) for s in inner.state.values() if "step" in s]
    return per_param or [float(g["step"]) for g in inner.param_groups if "step" in g]


def roundtrip(workdir: Path, label: str, optimizer_format: str) -> dict[str, Any]:
    import torch

    from training.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
    from training.config import config_to_dict

    config = tiny_config()
    module, model, optimizer, scheduler = build_stack(config, seed=1)
    losses = [train_step(model, optimizer, scheduler, s) for s in range(2)]
    root = workdir / f"{label}_{optimizer_format}"
    save_checkpoint(root, 2, module, optimizer, scheduler, {"config": config_to_dict(config)},
                    optimizer_format=optimizer_format)
    module2, model2, optimizer2, scheduler2 = build_stack(config, seed=2)
    step = load_checkpoint(find_checkpoint(root), module2, optimizer2, scheduler2)
    state_keys = sorted({k for s in _inner(optimizer2).state.values() for k in s})
    same_state = all(
        torch.equal(a[key], b[key])
        for a, b in zip(_inner(optimizer).state.values(), _inner(optimizer2).state.values(), strict=True)
        for key in ("exp_avg", "exp_avg_sq"))
    steps_loaded, steps_original = _steps(optimizer2), _steps(optimizer)
    next_a = train_step(model, optimizer, scheduler, 2)
    next_b = train_step(model2, optimizer2, scheduler2, 2)
    same_params = all(torch.equal(p, q) for p, q in zip(module.parameters(), module2.parameters(), strict=True))
    return {"optimizer_class": type(_inner(optimizer)).__name__, "loaded_step": step, "losses": losses,
            "state_keys": state_keys, "same_adam_state": same_state, "steps_original": sorted(set(steps_original)),
            "steps_loaded": sorted(set(steps_loaded)), "next_loss_equal": next_a == next_b,
            "params_equal_after_next_step": same_params}


def bind_te_optimizer() -> None:
    """What ``try: from transformer_engine.pytorch.optimizers import FusedAdam as Adam`` binds."""
    from megatron.core import optimizer as mcore_optimizer
    from megatron.core.optimizer import distrib_optimizer

    from tests.training.fused_adam_contracts import TEFusedAdam

    mcore_optimizer.Adam, mcore_optimizer.USING_PYTORCH_OPTIMIZER = TEFusedAdam, False
    distrib_optimizer.Adam, distrib_optimizer.HAVE_APEX_OR_TE = TEFusedAdam, True
    distrib_optimizer.USING_TE_OPTIMIZER = True


def optimizers(workdir: Path) -> dict[str, Any]:
    result = {f"torch_{fmt}": roundtrip(workdir, "torch", fmt) for fmt in ("fully_reshardable", "dp_reshardable")}
    bind_te_optimizer()
    result.update({f"te_{fmt}": roundtrip(workdir, "te", fmt) for fmt in ("fully_reshardable", "dp_reshardable")})
    return result


def apex(workdir: Path) -> dict[str, Any]:
    import torch
    from megatron.core.models.gpt import GPTModel, gpt_layer_specs

    from training.model import build_model, transformer_config

    config = tiny_config()
    result: dict[str, Any] = {"megatron_have_apex": gpt_layer_specs.HAVE_APEX,
                              "megatron_final_norm": gpt_layer_specs.LNImpl.__name__}
    tc = transformer_config(config, runtime("local"))
    raw = gpt_layer_specs.get_gpt_decoder_block_spec(tc, use_transformer_engine=False, normalization="RMSNorm")
    try:
        GPTModel(config=tc, transformer_layer_spec=raw, vocab_size=384, max_sequence_length=32)
        result["megatron_spec_builds"] = True
    except Exception as exc:  # what the issue reports: Apex without TE crashes in the layer-spec code
        result["megatron_spec_builds"] = f"{type(exc).__name__}: {exc}"
    for impl in ("local", "sdpa"):
        model = build_model(config, runtime(impl), VOCAB)
        ids = torch.randint(0, VOCAB, (1, 32))
        with torch.no_grad():
            out = model(input_ids=ids, position_ids=torch.arange(32).unsqueeze(0), attention_mask=None)
        result[f"{impl}_final_norm"] = type(model.decoder.final_layernorm).__name__
        result[f"{impl}_forward_finite"] = bool(torch.isfinite(out).all())
    result.update({f"apex_{fmt}": roundtrip(workdir, "apex", fmt) for fmt in ("fully_reshardable", "dp_reshardable")})
    return result


def _give_extra_state(module) -> None:
    """Give one module an ``_extra_state`` as Transformer Engine's modules have (their FP8 metadata)."""
    import io

    import torch

    class WithExtraState(type(module)):
        def get_extra_state(self):
            buffer = io.BytesIO()
            torch.save({"fp8_meta": "none"}, buffer)
            return buffer

        def set_extra_state(self, state) -> None:
            self.loaded_extra_state = state

    module.__class__ = WithExtraState


def extra_state(work: Path) -> dict[str, Any]:
    """A checkpoint without ``_extra_state`` into a model with one (CPU-written into TE), and back."""
    import torch
    from megatron.core import dist_checkpointing

    from training.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
    from training.config import config_to_dict

    config = tiny_config()
    meta = {"config": config_to_dict(config)}
    result: dict[str, Any] = {}
    plain, model, optimizer, scheduler = build_stack(config, seed=1)
    train_step(model, optimizer, scheduler, 0)
    save_checkpoint(work / "plain", 1, plain, optimizer, scheduler, meta)
    te_like, _, optimizer2, scheduler2 = build_stack(config, seed=2)
    _give_extra_state(te_like.decoder.final_layernorm)
    request = {"model": te_like.sharded_state_dict()}
    result["extra_state_requested"] = any("_extra_state" in k for k in te_like.state_dict())
    try:
        dist_checkpointing.load(request, str(work / "plain" / "iter_0000001"))
        result["megatron_default_load"] = "ok"
    except BaseException as exc:  # torch.distributed.checkpoint's CheckpointException is a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        result["megatron_default_load"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    load_checkpoint(find_checkpoint(work / "plain"), te_like, optimizer2, scheduler2)
    result["into_extra_state_params_equal"] = all(
        torch.equal(p, q) for p, q in zip(plain.parameters(), te_like.parameters(), strict=True))
    save_checkpoint(work / "te_like", 1, te_like, optimizer2, scheduler2, meta)
    back, _, optimizer3, scheduler3 = build_stack(config, seed=3)
    load_checkpoint(find_checkpoint(work / "te_like"), back, optimizer3, scheduler3)
    result["back_params_equal"] = all(
        torch.equal(p, q) for p, q in zip(plain.parameters(), back.parameters(), strict=True))
    return result


def main(mode: str, workdir: str) -> None:
    if mode == "apex":
        install_fake_apex()
    init_single_process()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    result = {"attention": attention, "optimizers": lambda: optimizers(work), "apex": lambda: apex(work),
              "extra_state": lambda: extra_state(work)}[mode]()
    print(json.dumps(result))


if __name__ == "__main__":  # the checkpoint writer starts processes: the module must import safely
    main(*sys.argv[1:])
