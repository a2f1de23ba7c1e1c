"""Run megatron-core 0.16 on machines without CUDA (tests, laptops, CI).

megatron-core assumes a CUDA device in a handful of ways (see docs: megatron-core on CPU): it asks
``torch.cuda.current_device()`` for the device of new tensors, saves and restores the CUDA RNG in its
model-parallel RNG tracker, creates tensors with ``device="cuda"`` or ``.cuda()``, calls
``torch.cuda.synchronize()``, and checks type strings such as ``'torch.cuda.FloatTensor'``.

``activate()`` answers each of those with the CPU equivalent, and does nothing at all when CUDA is
available: every replacement is listed in ``_replacements()`` and applied only after the
``torch.cuda.is_available()`` check, so the GPU path runs megatron-core untouched. The device
mapping is a ``TorchFunctionMode``, which is thread-local: activate in the thread that trains.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

CPU = torch.device("cpu")


def _is_cuda_device(device: Any) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    # A bare int as a device is a CUDA ordinal (megatron passes torch.cuda.current_device()).
    return isinstance(device, int) and not isinstance(device, bool)


def _to_cpu_type_string(type_string: str) -> str:
    return type_string.replace("torch.cuda.", "torch.", 1)


class CudaToCpuMode(TorchFunctionMode):
    """Maps CUDA devices to the CPU in tensor creation and moves, and reports CUDA type strings.

    Reporting ``torch.cuda.*Tensor`` for CPU tensors keeps megatron's type-string checks (gradient
    clipping, optimizer dtype maps) on the path they take on GPUs.
    """

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if _is_cuda_device(kwargs.get("device")):
            kwargs["device"] = CPU
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.to:
            args = tuple(CPU if i > 0 and _is_cuda_device(a) else a for i, a in enumerate(args))
        if func is torch.Tensor.type:
            if len(args) == 1 and "dtype" not in kwargs:
                return _to_cuda_type_string(func(*args, **kwargs))
            if len(args) > 1 and isinstance(args[1], str):
                args = (args[0], _to_cpu_type_string(args[1]), *args[2:])
        return func(*args, **kwargs)


def _to_cuda_type_string(type_string: str) -> str:
    return type_string if type_string.startswith("torch.cuda.") else type_string.replace("torch.", "torch.cuda.", 1)


def _cpu_rng_state(device: Any = "cuda", clone: bool = False, graph_safe: bool = False) -> torch.Tensor:
    return torch.get_rng_state()


def _set_cpu_rng_state(new_state: torch.Tensor, device: int = -1, graph_safe: bool = False) -> None:
    torch.set_rng_state(new_state)


def _current_device() -> torch.device:
    return CPU


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None


@dataclass(frozen=True)
class Replacement:
    owner: Any
    name: str
    value: Any


def _replacements() -> list[Replacement]:
    """Every attribute the layer replaces. Imported here so that the GPU path never imports them early."""
    from megatron.core.tensor_parallel import random as mcore_random

    return [
        Replacement(torch.cuda, "current_device", _current_device),
        Replacement(torch.cuda, "synchronize", _no_op),
        # The model-parallel RNG tracker forks "the CUDA generator"; on CPU that is the CPU one, which
        # is also what dropout on CPU tensors draws from.
        Replacement(torch.cuda, "get_rng_state", _cpu_rng_state),
        Replacement(torch.cuda, "set_rng_state", _set_cpu_rng_state),
        Replacement(torch.cuda, "manual_seed", torch.manual_seed),
        Replacement(mcore_random, "_get_cuda_rng_state", _cpu_rng_state),
        Replacement(mcore_random, "_set_cuda_rng_state", _set_cpu_rng_state),
    ]


_originals: list[Replacement] | None = None  # what activate() replaced, process-wide
_thread = threading.local()  # the device mode of each thread that activated


def needed() -> bool:
    return not torch.cuda.is_available()


def is_active() -> bool:
    return _originals is not None


def activate() -> bool:
    """Apply the layer in this process and enter the device mode in this thread. Returns whether it
    is active; with CUDA available nothing is replaced and False is returned.
    """
    global _originals
    if not needed():
        return False
    if _originals is None:
        replacements = _replacements()
        _originals = [Replacement(r.owner, r.name, getattr(r.owner, r.name)) for r in replacements]
        for r in replacements:
            setattr(r.owner, r.name, r.value)
    if getattr(_thread, "mode", None) is None:
        _thread.mode = CudaToCpuMode()
        _thread.mode.__enter__()
    return True


def deactivate() -> None:
    """Leave this thread's device mode and restore every replaced attribute."""
    global _originals
    mode = getattr(_thread, "mode", None)
    if mode is not None:
        mode.__exit__(None, None, None)
        _thread.mode = None
    if _originals is not None:
        for r in reversed(_originals):
            setattr(r.owner, r.name, r.value)
        _originals = None


@contextlib.contextmanager
def cpu_compat() -> Iterator[bool]:
    """``with cpu_compat() as active:`` — the layer for the duration of the block (no-op with CUDA)."""
    already = is_active()
    active = activate()
    try:
        yield active
    finally:
        if active and not already:
            deactivate()
