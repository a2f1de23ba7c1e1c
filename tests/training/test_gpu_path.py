"""The GPU path, checked on CPU: what each combination of installed packages makes of the model
(read from ``Runtime`` and the built ``TransformerConfig``), placement and device checks, seeds.

Package presence is simulated the way Python sees it, never by replacing the code under test:
a meta-path finder makes ``transformer_engine`` findable and either importable or failing with the
``OSError`` a wheel built for another CUDA raises; a kernel module (``scaled_masked_softmax_cuda``)
is put into ``sys.modules``; megatron-core's own import-time flag for Apex's gradient-accumulation
kernel (``tensor_parallel.layers._grad_accum_fusion_available``) is set as that import would set it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

import pytest
import torch

from training.config import ConfigError, config_from_dict
from training.model import Runtime, transformer_config


def _config(**top):
    parallel = top.pop("parallel", {})
    return config_from_dict({"model": {"preset": "1b"}, "data": {"blend": "b.json"}, "parallel": parallel, **top})


class _FakeTransformerEngine(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``transformer_engine`` (and ``.pytorch``) findable; importable, or failing like a broken wheel."""

    def __init__(self, broken: bool) -> None:
        self.broken = broken

    def find_spec(self, name, path=None, target=None):
        if name in ("transformer_engine", "transformer_engine.pytorch"):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if self.broken:
            raise OSError("libtransformer_engine.so: undefined symbol: cudaGetDriverEntryPointByVersion")
        module.__path__ = []


@pytest.fixture
def packages(monkeypatch):
    """``packages(cuda=..., te=None|"ok"|"broken", softmax_kernel=..., grad_accum_kernel=...)``."""
    from megatron.core.tensor_parallel import layers

    def install(cuda: bool = True, te: str | None = None, softmax_kernel: bool = False,
                grad_accum_kernel: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        for name in ("transformer_engine", "transformer_engine.pytorch", "scaled_masked_softmax_cuda"):
            monkeypatch.delitem(sys.modules, name, raising=False)
        if te is not None:
            monkeypatch.setattr(sys, "meta_path", [_FakeTransformerEngine(te == "broken"), *sys.meta_path])
        if softmax_kernel:
            kernel = types.ModuleType("scaled_masked_softmax_cuda")
            monkeypatch.setitem(sys.modules, "scaled_masked_softmax_cuda", kernel)
        monkeypatch.setattr(layers, "_grad_accum_fusion_available", grad_accum_kernel)

    yield install
    for name in ("transformer_engine", "transformer_engine.pytorch"):
        sys.modules.pop(name, None)


def test_cpu_uses_megatron_local_attention_without_fusions(packages):
    packages(cuda=False)
    runtime = Runtime.detect(_config(parallel={"tensor": 2}))
    assert (runtime.transformer_impl, runtime.bf16, runtime.sequence_parallel) == ("local", False, False)
    tc = transformer_config(_config(), runtime)
    assert not tc.masked_softmax_fusion and not tc.gradient_accumulation_fusion and not tc.apply_rope_fusion


def test_gpu_without_te_or_apex_takes_the_sdpa_path_with_no_kernel_it_lacks(packages):
    packages(cuda=True)
    runtime = Runtime.detect(_config(parallel={"tensor": 2}))
    assert runtime.transformer_impl == "sdpa" and runtime.bf16 and not runtime.sequence_parallel
    assert any("not installed" in note for note in runtime.notes)
    tc = transformer_config(_config(parallel={"tensor": 2}), runtime)
    # The bug this guards: masked_softmax_fusion=True without the kernel crashes step 1.
    assert not tc.masked_softmax_fusion and not tc.gradient_accumulation_fusion and not tc.apply_rope_fusion
    assert tc.bf16 and tc.params_dtype == torch.bfloat16 and not tc.sequence_parallel


def test_gpu_with_importable_te_takes_the_te_spec_and_sequence_parallel(packages):
    packages(cuda=True, te="ok")
    runtime = Runtime.detect(_config(parallel={"tensor": 2}))
    assert runtime.transformer_engine and runtime.sequence_parallel and not runtime.notes
    tc = transformer_config(_config(parallel={"tensor": 2}), runtime)
    assert tc.sequence_parallel and not tc.masked_softmax_fusion
    # RoPE fusion follows what megatron-core found at its import (here: no TE then, so off rather than
    # a TransformerConfig error).
    assert tc.apply_rope_fusion is False and runtime.rope_fusion is False
    assert Runtime.detect(_config(parallel={"tensor": 1})).sequence_parallel is False  # nothing to split


def test_te_found_but_failing_to_import_falls_back_to_sdpa_or_fails_when_required(packages):
    packages(cuda=True, te="broken")
    runtime = Runtime.detect(_config(parallel={"tensor": 2}))
    assert runtime.transformer_impl == "sdpa" and not runtime.sequence_parallel
    assert any("fails to import (OSError" in note for note in runtime.notes)
    with pytest.raises(ConfigError, match=r"transformer_impl: transformer_engine: .*fails to import \(OSError"):
        Runtime.detect(_config(transformer_impl="transformer_engine"))
    with pytest.raises(ConfigError, match=r"sequence_parallel needs CUDA with Transformer Engine .*OSError"):
        Runtime.detect(_config(parallel={"tensor": 2, "sequence_parallel": True}))


def test_apex_kernels_without_te_turn_on_exactly_their_fusions(packages):
    packages(cuda=True, softmax_kernel=True, grad_accum_kernel=True)
    sdpa = Runtime.detect(_config())
    assert sdpa.transformer_impl == "sdpa" and sdpa.gradient_accumulation_fusion
    assert not sdpa.masked_softmax_fusion  # SDPA has its own softmax
    local = Runtime.detect(_config(transformer_impl="local"))
    tc = transformer_config(_config(transformer_impl="local"), local)
    assert tc.masked_softmax_fusion and tc.gradient_accumulation_fusion


def test_requested_options_name_the_missing_package(packages):
    packages(cuda=True)
    with pytest.raises(ConfigError, match="transformer_impl: transformer_engine: Transformer Engine is not installed"):
        Runtime.detect(_config(transformer_impl="transformer_engine"))
    with pytest.raises(ConfigError, match="sequence_parallel needs CUDA with Transformer Engine"):
        Runtime.detect(_config(parallel={"tensor": 2, "sequence_parallel": True}))
    packages(cuda=False)
    with pytest.raises(ConfigError, match="transformer_engine needs a CUDA GPU"):
        Runtime.detect(_config(transformer_impl="transformer_engine"))


def test_bf16_on_a_rank_without_gpu_is_an_error(packages):
    packages(cuda=False)
    with pytest.raises(ConfigError, match=r"precision: bf16 needs a CUDA GPU on every rank"):
        Runtime.detect(_config(precision="bf16"))
    assert Runtime.detect(_config(precision="auto")).bf16 is False


def test_local_launcher_checks_devices_before_starting_ranks():
    from training.launch import LaunchError, check_local_devices

    eight = _config(parallel={"data": 8}, precision="bf16")
    with pytest.raises(LaunchError, match=r"parallel.world_size 8 .* needs 8 GPUs on this machine; 1 visible"):
        check_local_devices(eight, cuda_available=True, device_count=1)
    check_local_devices(eight, cuda_available=True, device_count=8)
    with pytest.raises(LaunchError, match="precision: bf16 needs a CUDA GPU per rank"):
        check_local_devices(eight, cuda_available=False, device_count=0)
    check_local_devices(_config(parallel={"tensor": 2}), cuda_available=False, device_count=0)  # CPU fp32 runs


def test_ray_placement_comes_from_the_config_and_cluster_resources():
    from training.launch import LaunchError
    from training.ray_launch import ray_placement

    dp8 = _config(parallel={"data": 8}, precision="bf16")
    gpu = ray_placement(dp8, {"CPU": 8.0, "GPU": 16.0})  # e.g. a CPU head node and two 8-GPU workers
    assert (gpu.use_gpu, gpu.backend, gpu.resources_per_worker) == (True, "nccl", {"CPU": 1.0, "GPU": 1.0})
    scaling = gpu.scaling_config(8)
    assert scaling.num_workers == 8 and scaling.use_gpu and scaling.resources_per_worker == {"CPU": 1.0, "GPU": 1.0}
    cpu = ray_placement(_config(parallel={"tensor": 2}), {"CPU": 2.0})
    assert (cpu.use_gpu, cpu.backend, cpu.resources_per_worker) == (False, "gloo", {"CPU": 1.0})
    with pytest.raises(LaunchError, match=r"needs 8 GPUs and the Ray cluster has 2"):
        ray_placement(dp8, {"CPU": 64.0, "GPU": 2.0})
    with pytest.raises(LaunchError, match=r"needs 8 GPUs and the Ray cluster has 0"):
        ray_placement(dp8, {"CPU": 64.0})  # bf16 asks for GPUs
    waiting = ray_placement(_config(parallel={"data": 8}, launch={"use_gpu": True, "cpus_per_worker": 4}),
                            {"CPU": 4.0})  # an autoscaler adds the GPU nodes
    assert waiting.use_gpu and waiting.resources_per_worker == {"CPU": 4.0, "GPU": 1.0}
    forced_cpu = ray_placement(_config(launch={"use_gpu": False}), {"CPU": 8.0, "GPU": 8.0})
    assert forced_cpu.backend == "gloo" and not forced_cpu.use_gpu
    with pytest.raises(LaunchError, match="bf16 needs GPU workers"):
        ray_placement(_config(precision="bf16", launch={"use_gpu": False}), {"CPU": 8.0, "GPU": 8.0})


def test_ranks_get_cuda_device_max_connections_for_tensor_parallelism():
    from training.rank import rank_environment

    assert rank_environment(_config(parallel={"tensor": 2})) == {"CUDA_DEVICE_MAX_CONNECTIONS": "1"}
    assert rank_environment(_config(parallel={"tensor": 2, "sequence_parallel": False})) == {}
    assert rank_environment(_config(parallel={"data": 8})) == {}


def test_pipeline_stages_are_seeded_as_megatron_lm_seeds_them():
    """Megatron-LM ``_set_random_seed``: ``seed + 100 * pp_rank``; no DP offset by default."""
    from training.rank import stage_seed

    assert [stage_seed(1234, pp) for pp in range(4)] == [1234, 1334, 1434, 1534]


def test_mfu_peak_tells_h200_nvl_from_sxm():
    from training.metrics import peak_tflops_for

    # NVIDIA H200 datasheet, bf16 tensor core with sparsity: SXM 1,979 TFLOPS, NVL 1,671 TFLOPS (dense: half).
    assert peak_tflops_for("NVIDIA H200 NVL") == pytest.approx(1671 / 2, abs=0.1)
    assert peak_tflops_for("NVIDIA H200") == pytest.approx(1979 / 2, abs=0.2)


def test_training_rank_reads_its_tokenizer_without_the_chemistry_stack(tmp_path):
    """Import the rank entry module and load a saved tokenizer in a fresh process: no RDKit, pymatgen,
    gemmi, biotite or spglib may be imported on the way."""
    import json
    import subprocess

    from grammar.tokenizer import default_tokenizer
    from tests.training.helpers import REPO

    tokenizer = default_tokenizer()
    tokenizer.save(tmp_path / "tokenizer")
    blend = {"format": "logos-megatron-blend/1", "dtype": "uint16",
             "splits": {"train": {"prefixes": ["megatron/train/m"], "weights": [1.0], "domains": ["m"]}},
             "tokenizer": {"path": "tokenizer", "content_hash": tokenizer.content_hash,
                           "vocab_size": tokenizer.vocab_size, "eod_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id}}
    (tmp_path / "blend.json").write_text(json.dumps(blend))
    (tmp_path / "megatron" / "train").mkdir(parents=True)
    for suffix in (".bin", ".idx"):  # read_blend checks that the prefixes exist; nothing reads them here
        (tmp_path / "megatron" / "train" / f"m{suffix}").write_bytes(b"")
    script = (
        "import sys, json\n"
        "import training.rank\n"
        "from training.blend import load_tokenizer, read_blend\n"
        f"t = load_tokenizer(read_blend({str(tmp_path / 'blend.json')!r}))\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'rdkit', 'pymatgen', 'gemmi', 'biotite', 'spglib',"
        " 'chembl_structure_pipeline'})\n"
        "print(json.dumps({'vocab': t.vocab_size, 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"vocab": tokenizer.vocab_size, "heavy": []}
