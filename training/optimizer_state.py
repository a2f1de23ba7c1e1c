"""Loading optimizer state into megatron-core 0.16 optimizers over torch Adam.

Without Apex or Transformer Engine (always on CPU) megatron's optimizers wrap ``torch.optim.Adam``,
which keeps a per-parameter ``step``; three places in megatron's load path do not expect that. Each
function below says which, and is harmless where the issue does not arise (fused Adam on GPUs).
"""

from __future__ import annotations

from typing import Any

import torch

from training.checkpoint import CheckpointError


def materialize_optimizer_state(optimizer: Any) -> None:
    """Give a fresh torch Adam its state tensors and step before a load.

    Without Apex/Transformer Engine the distributed optimizer reads the Adam ``step`` from the
    existing per-parameter state while building the state dict to load into, which a never-stepped
    optimizer does not have; the loaded checkpoint then overwrites state and step.
    """
    for inner in getattr(optimizer, "chained_optimizers", [optimizer]):
        torch_optimizer = getattr(inner, "optimizer", None)
        if torch_optimizer is None or getattr(inner, "init_state_fn", None) is None:
            continue
        inner.init_state_fn(torch_optimizer, getattr(inner, "config", None))
        for state in torch_optimizer.state.values():
            state.setdefault("step", torch.tensor(0.0))


def load_optimizer_state(optimizer: Any, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict`` that also works for the distributed optimizer over torch Adam.

    megatron-core 0.16 restores "fully_reshardable" parameter state by copying every key of the
    torch optimizer's per-parameter state from the checkpoint, but the checkpoint (rightly) keeps the
    Adam ``step`` elsewhere; with torch Adam (no Apex/Transformer Engine, e.g. on CPU) the per-param
    state has a ``step`` and the copy fails with KeyError. Load the step first, then the tensors with
    ``step`` set aside.
    """
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    chained = getattr(optimizer, "chained_optimizers", None)
    if chained is None or len(chained) != 1 or not isinstance(chained[0], DistributedOptimizer):
        optimizer.load_state_dict(state)
        _unshare_adam_steps(optimizer)
        return
    inner = chained[0]
    torch_state = inner.optimizer.state
    if not any("step" in s for s in torch_state.values()) or "param_state" not in state:
        inner.load_state_dict(state)
        return
    if state["param_state_sharding_type"] != "fully_reshardable":
        raise CheckpointError(f"unsupported optimizer state format {state['param_state_sharding_type']!r}")
    inner.load_state_dict({k: v for k, v in state.items() if k != "param_state"})  # step, param groups
    torch_state = inner.optimizer.state  # load_state_dict replaced the state dict
    steps = {param: s.pop("step") for param, s in torch_state.items() if "step" in s}
    try:
        inner.load_parameter_state_from_fully_reshardable(state["param_state"])
    finally:
        for param, step in steps.items():
            torch_state[param]["step"] = step
        _unshare_adam_steps(optimizer)


def _unshare_adam_steps(optimizer: Any) -> None:
    """Give every parameter its own Adam ``step`` tensor.

    The loaders put one shared step tensor into every parameter's state; torch's foreach Adam then
    increments the shared tensor once per parameter, and bias correction goes wrong from the first
    step after a resume.
    """
    for inner in getattr(optimizer, "chained_optimizers", [optimizer]):
        torch_optimizer = getattr(inner, "optimizer", None)
        if torch_optimizer is None:
            continue
        seen: set[int] = set()
        for state in torch_optimizer.state.values():
            step = state.get("step")
            if isinstance(step, torch.Tensor):
                if id(step) in seen:
                    state["step"] = step.clone()
                seen.add(id(state["step"]))
