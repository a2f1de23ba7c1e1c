"""The CPU compatibility layer: inert when CUDA is present, and what it maps when it is not."""

from __future__ import annotations

import pytest
import torch

from training import cpu_compat


@pytest.fixture
def layer():
    """Activate for one test and always restore (the layer is process-wide state)."""
    try:
        yield cpu_compat.activate()
    finally:
        cpu_compat.deactivate()


def _current_values() -> list[object]:
    return [getattr(r.owner, r.name) for r in cpu_compat._replacements()]


def test_with_cuda_present_nothing_is_replaced(monkeypatch):
    before = _current_values()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    try:
        assert cpu_compat.activate() is False
        with cpu_compat.cpu_compat() as active:
            assert active is False
            assert not cpu_compat.is_active()
            after = _current_values()
    finally:
        cpu_compat.deactivate()
    assert all(a is b for a, b in zip(before, after, strict=True))
    assert len(before) == len(cpu_compat._replacements()) > 0
    # No device mode was entered: a CUDA tensor is still a CUDA tensor request (which fails here).
    if not torch.cuda.is_available():
        with pytest.raises((AssertionError, RuntimeError)):
            torch.zeros(1, device="cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the layer only acts without CUDA")
def test_cuda_requests_become_cpu(layer):
    assert layer is True
    x = torch.zeros(2, device="cuda")
    assert x.device.type == "cpu"
    assert x.cuda() is x
    assert x.to("cuda").device.type == "cpu"
    assert torch.empty(3, device=torch.cuda.current_device()).device.type == "cpu"
    assert x.type() == "torch.cuda.FloatTensor"  # megatron's type-string checks see the GPU answer
    assert x.type("torch.cuda.HalfTensor").dtype == torch.float16
    torch.cuda.synchronize()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the layer only acts without CUDA")
def test_deactivate_restores_every_original():
    before = _current_values()
    cpu_compat.activate()
    patched = _current_values()
    cpu_compat.deactivate()
    assert all(a is b for a, b in zip(before, _current_values(), strict=True))
    assert any(a is not b for a, b in zip(before, patched, strict=True))
    with pytest.raises((AssertionError, RuntimeError)):
        torch.zeros(1, device="cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the layer only acts without CUDA")
def test_megatron_rng_tracker_forks_the_cpu_generator(layer):
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker, model_parallel_cuda_manual_seed

    model_parallel_cuda_manual_seed(123, tp_rank=0, ep_rank=0, etp_rank=0)
    tracker = get_cuda_rng_tracker()
    try:
        torch.manual_seed(0)
        torch.rand(3)
        with tracker.fork():
            inside = torch.rand(3)
        after = torch.rand(3)

        torch.manual_seed(0)
        torch.rand(3)
        expected_after = torch.rand(3)
        assert torch.equal(after, expected_after)  # the fork restored the default stream
        assert not torch.equal(inside, expected_after)

        model_parallel_cuda_manual_seed(123, tp_rank=0, ep_rank=0, etp_rank=0)
        with tracker.fork():
            assert torch.equal(torch.rand(3), inside)  # the model-parallel stream is seeded
    finally:
        tracker.reset()
