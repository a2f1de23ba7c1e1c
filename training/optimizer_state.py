"""Loading optimizer state into megatron-core 0.16 optimizers, whichever Adam they wrap.

megatron-core picks the Adam class at import time (``megatron.core.optimizer``): Transformer
Engine's ``FusedAdam`` if it imports, else Apex's ``FusedAdam``, else ``torch.optim.Adam``/``AdamW``.
Their per-parameter state differs, and megatron's load path assumes the fused layouts:

- torch Adam/AdamW: ``exp_avg``, ``exp_avg_sq`` and a per-parameter ``step`` tensor.
- Apex ``FusedAdam``: ``exp_avg``, ``exp_avg_sq``; the step is ``param_group["step"]`` (an int).
- TE ``FusedAdam``: ``exp_avg``, ``exp_avg_sq`` and, with master weights, ``master_param``; the step is
  ``param_group["step"]``. Its ``state_dict()`` looks every state key up in ``name_to_dtype_map``
  (those three names only), so a ``step`` entry in a parameter's state raises ``KeyError: 'step'``.

So a per-parameter ``step`` is added, set aside and restored only for torch's Adam classes; the fused
ones are left in their own layout.

``unpadded_world_offsets`` works around a megatron-core 0.16 bug in the ``fully_reshardable`` format
with more than one gradient bucket (see its docstring).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from typing import Any

import torch

from training.checkpoint import CheckpointError


def keeps_per_parameter_step(torch_optimizer: Any) -> bool:
    """Whether this optimizer keeps Adam's step in each parameter's state (torch) or per group (fused)."""
    return isinstance(torch_optimizer, torch.optim.Adam | torch.optim.AdamW)


def materialize_optimizer_state(optimizer: Any) -> None:
    """Give a fresh optimizer its state tensors (and, for torch Adam, its step) before a load.

    The distributed optimizer builds the state dict to load into from the existing per-parameter
    state, which a never-stepped optimizer does not have (and, over torch Adam, reads ``step`` from
    it); the loaded checkpoint then overwrites state and step.
    """
    for inner in getattr(optimizer, "chained_optimizers", [optimizer]):
        torch_optimizer = getattr(inner, "optimizer", None)
        if torch_optimizer is None or getattr(inner, "init_state_fn", None) is None:
            continue
        inner.init_state_fn(torch_optimizer, getattr(inner, "config", None))
        if keeps_per_parameter_step(torch_optimizer):
            for state in torch_optimizer.state.values():
                state.setdefault("step", torch.tensor(0.0))


def load_optimizer_state(optimizer: Any, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict`` that also works for the distributed optimizer over torch Adam.

    The fused Adams (TE, Apex) take megatron's own path unchanged.

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
    if not keeps_per_parameter_step(inner.optimizer) or "param_state" not in state:
        # megatron's dp_reshardable loader copies into the main parameters (with fp32 params, views of
        # leaves that require grad) outside no_grad, which torch refuses; the other loaders are no_grad.
        with torch.no_grad():
            inner.load_state_dict(state)
        return
    loaders = {"fully_reshardable": inner.load_parameter_state_from_fully_reshardable,
               # dp_reshardable copies every per-parameter state key from the checkpoint, step included,
               # and the checkpoint's "step" is the placeholder of the state the request was built from:
               # loaded as is, Adam's step counter would restart.
               "dp_reshardable": inner.load_parameter_state_from_dp_reshardable}
    sharding = state["param_state_sharding_type"]
    if sharding not in loaders:
        raise CheckpointError(f"unsupported optimizer state format {sharding!r}")
    inner.load_state_dict({k: v for k, v in state.items() if k != "param_state"})  # step, param groups
    torch_state = inner.optimizer.state  # load_state_dict replaced the state dict
    steps = {param: s.pop("step") for param, s in torch_state.items() if "step" in s}
    try:
        with torch.no_grad():  # as above
            loaders[sharding](_without_steps(state["param_state"]))
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


def _without_steps(param_state: Any) -> Any:
    """The parameter state with every per-parameter ``step`` entry left out (nested dicts and lists)."""
    if isinstance(param_state, dict):
        return {k: _without_steps(v) for k, v in param_state.items() if k != "step"}
    if isinstance(param_state, list):
        return [_without_steps(v) for v in param_state]
    return param_state


@functools.cache
def _slices_with_padded_offsets() -> bool:
    """Whether the installed megatron-core still has the bucket-padding bug (its zero-padding workaround
    for a parameter range past the world tensor, which the upstream fix replaced by a bound check)."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    return "missing_elems_num" in inspect.getsource(DistributedOptimizer.sharded_param_state_fully_reshardable)


@contextlib.contextmanager
def unpadded_world_offsets(optimizer: Any) -> Iterator[None]:
    """While a ``fully_reshardable`` optimizer state dict is built, index its world tensors correctly.

    megatron-core 0.16.1 gathers the distributed optimizer's state (main fp32 parameters, exp_avg,
    exp_avg_sq) into one world tensor per buffer with each bucket's end padding *stripped*, then
    ``sharded_param_state_fully_reshardable`` cuts every parameter out of it at its offset in the
    *padded* buffer (``param_index_map``). With one bucket the two agree; past the first of several
    buckets every parameter is cut shifted by the padding stripped before its bucket: the checkpoint
    holds another parameter's main weights and moments (the tail of the last one zero-filled, with a
    warning), and a resumed run continues from them. Buckets come with ``overlap_grad_reduce`` (the
    trainer's GPU setting: ~40M parameters each) and are padded to a multiple of lcm(DP size, 128)
    elements. Fixed upstream in NVIDIA/Megatron-LM PR #5077 (offsets rebased the same way).

    Here ``param_index_map`` is swapped, for the duration of the call, for one with the stripped padding
    subtracted: the only readers while a checkpoint is saved or loaded are that function and the
    ``fully_reshardable`` loader, which takes only the iteration order from it. Checkpoints keep
    megatron's model-space layout; ones written with the bug and padded buckets cannot be repaired.
    """
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    swapped: list[tuple[Any, dict]] = []
    if _slices_with_padded_offsets():
        for inner in getattr(optimizer, "chained_optimizers", [optimizer]):
            if not isinstance(inner, DistributedOptimizer):
                continue
            for buffer in inner.buffers:
                stripped_before, stripped = [], 0
                for bucket in buffer.buckets:
                    stripped_before.append(stripped)
                    stripped += bucket.grad_data.numel() - bucket.numel_unpadded
                if stripped == 0:
                    continue
                original = buffer.param_index_map
                buffer.param_index_map = {
                    param: (start - stripped_before[bucket_id], end - stripped_before[bucket_id], bucket_id)
                    for param, (start, end, bucket_id) in original.items()}
                swapped.append((buffer, original))
    try:
        yield
    finally:
        for buffer, original in swapped:
            buffer.param_index_map = original
