"""What the hardware decides for the model: GPU runs get bf16, NCCL-side settings, TE and sequence
parallelism; CPU runs the local spec in fp32. Checked on the decision functions, since no GPU here."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from training.config import ConfigError, config_from_dict
from training.model import Runtime, transformer_config


def _config(**parallel):
    return config_from_dict({"model": {"preset": "1b"}, "data": {"blend": "b.json"}, "parallel": parallel})


@pytest.fixture
def gpu_with_te(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "transformer_engine" else real(name, *a))


def test_gpu_runtime_uses_bf16_te_and_sequence_parallel(gpu_with_te):
    runtime = Runtime.detect(_config(tensor=2))
    assert runtime == Runtime(cuda=True, bf16=True, transformer_engine=True, sequence_parallel=True)
    assert Runtime.detect(_config(tensor=1)).sequence_parallel is False  # nothing to split
    assert Runtime.detect(_config(tensor=2, sequence_parallel=False)).sequence_parallel is False


def test_cpu_runtime_is_fp32_local_spec():
    if torch.cuda.is_available():
        pytest.skip("CPU-only expectation")
    assert Runtime.detect(_config(tensor=2)) == Runtime(cuda=False, bf16=False, transformer_engine=False,
                                                        sequence_parallel=False)
    with pytest.raises(ConfigError, match="sequence_parallel needs CUDA with Transformer Engine"):
        Runtime.detect(_config(tensor=2, sequence_parallel=True))


def test_transformer_config_follows_the_runtime():
    config = _config(tensor=2)
    gpu = transformer_config(config, Runtime(cuda=True, bf16=True, transformer_engine=False, sequence_parallel=False))
    assert gpu.bf16 and gpu.params_dtype == torch.bfloat16 and gpu.pipeline_dtype == torch.bfloat16
    assert not gpu.use_cpu_initialization and gpu.bias_activation_fusion and gpu.masked_softmax_fusion
    cpu = transformer_config(config, Runtime(cuda=False, bf16=False, transformer_engine=False, sequence_parallel=False))
    assert not cpu.bf16 and cpu.params_dtype == torch.float32 and cpu.use_cpu_initialization
    assert not cpu.bias_activation_fusion  # torch.compile-d kernels cost more than they save on CPU
    for tc in (gpu, cpu):  # the Llama architecture either way
        assert tc.normalization == "RMSNorm" and tc.gated_linear_unit and not tc.add_bias_linear
        assert tc.num_query_groups == 8 and tc.kv_channels == 64 and tc.tensor_model_parallel_size == 2
