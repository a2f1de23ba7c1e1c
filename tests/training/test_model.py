"""What the hardware decides for the model: GPU runs get bf16, NCCL-side settings, TE and sequence
parallelism; CPU runs the local spec in fp32. Checked on the decision functions, since no GPU here."""

from __future__ import annotations

import torch

from training.config import config_from_dict
from training.model import Runtime, transformer_config


def _config(**parallel):
    return config_from_dict({"model": {"preset": "1b"}, "data": {"blend": "b.json"}, "parallel": parallel})


# Which runtime each combination of GPU and installed packages gets: tests/training/test_gpu_path.py.


def test_transformer_config_follows_the_runtime():
    config = _config(tensor=2)
    gpu = transformer_config(config, Runtime(cuda=True, bf16=True, transformer_impl="local", sequence_parallel=False,
                                             masked_softmax_fusion=True))
    assert gpu.bf16 and gpu.params_dtype == torch.bfloat16 and gpu.pipeline_dtype == torch.bfloat16
    assert not gpu.use_cpu_initialization and gpu.bias_activation_fusion and gpu.masked_softmax_fusion
    cpu = transformer_config(config, Runtime(cuda=False, bf16=False, transformer_impl="local", sequence_parallel=False))
    assert not cpu.bf16 and cpu.params_dtype == torch.float32 and cpu.use_cpu_initialization
    assert not cpu.bias_activation_fusion  # torch.compile-d kernels cost more than they save on CPU
    for tc in (gpu, cpu):  # the Llama architecture either way
        assert tc.normalization == "RMSNorm" and tc.gated_linear_unit and not tc.add_bias_linear
        assert tc.num_query_groups == 8 and tc.kv_channels == 64 and tc.tensor_model_parallel_size == 2
