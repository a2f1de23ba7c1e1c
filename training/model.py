"""Build the Llama-style megatron-core ``GPTModel`` for one pipeline stage of a run."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass

import torch

from training.config import ConfigError, TrainConfig
from training.presets import ModelConfig


def _import_problem(module: str) -> str | None:
    """None when ``module`` imports; otherwise why not, in a few words.

    A package can be found (``find_spec``) and still fail to import, e.g. a Transformer Engine
    wheel built for another CUDA or torch: that must be a reason, not a crash in megatron's spec code.
    """
    if sys.modules.get(module) is not None:
        return None
    top = module.split(".")[0]
    try:
        if importlib.util.find_spec(top) is None:
            return "not installed"
    except (ImportError, ValueError) as exc:
        return f"not importable ({exc})"
    try:
        importlib.import_module(module)
    except Exception as exc:  # OSError (missing .so), ImportError (undefined symbol), RuntimeError, ...
        return f"installed but fails to import ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def _megatron_has_grad_accum_kernel() -> bool:
    """megatron-core decides this once, when its linear layers are imported: ask it, not importlib."""
    from megatron.core.tensor_parallel import layers

    return bool(layers._grad_accum_fusion_available)


def _megatron_has_fused_rope() -> bool:
    """TE's fused RoPE as megatron-core found it when importing (TransformerConfig refuses it otherwise)."""
    from megatron.core.models.common.embeddings import rope_utils

    return rope_utils.fused_apply_rotary_pos_emb is not None or rope_utils.fused_apply_rotary_pos_emb_thd is not None


@dataclass(frozen=True)
class Runtime:
    """What the hardware and the installed packages decide for the model.

    ``transformer_impl``: ``transformer_engine`` (TE layer spec), ``sdpa`` (megatron's local spec with
    ``training.attention.SDPAttention`` as core attention) or ``local`` (megatron's local spec as is,
    ``DotProductAttention``). ``notes`` say why a choice was made when it was not the obvious one.
    """

    cuda: bool
    bf16: bool
    transformer_impl: str
    sequence_parallel: bool
    masked_softmax_fusion: bool = False
    gradient_accumulation_fusion: bool = False
    rope_fusion: bool = False
    notes: tuple[str, ...] = ()

    @property
    def transformer_engine(self) -> bool:
        return self.transformer_impl == "transformer_engine"

    @classmethod
    def detect(cls, config: TrainConfig) -> Runtime:
        cuda = torch.cuda.is_available()
        if config.precision == "bf16" and not cuda:
            raise ConfigError("precision: bf16 needs a CUDA GPU on every rank and this rank sees none "
                              "(torch.cuda.is_available() is False); use precision: fp32 or auto on CPU")
        bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda)
        notes: list[str] = []
        requested = config.transformer_impl
        te_problem = _import_problem("transformer_engine.pytorch") if cuda or requested == "transformer_engine" \
            else "no CUDA"
        if requested == "transformer_engine":
            if not cuda:
                raise ConfigError("transformer_impl: transformer_engine needs a CUDA GPU; this rank sees none")
            if te_problem:
                raise ConfigError(f"transformer_impl: transformer_engine: Transformer Engine is {te_problem}")
            impl = requested
        elif requested == "auto":
            if cuda and te_problem is None:
                impl = "transformer_engine"
            else:
                # Without TE on a GPU, SDPA's flash kernels; on CPU megatron's own attention (the reference).
                impl = "sdpa" if cuda else "local"
                if cuda:
                    notes.append(f"Transformer Engine {te_problem}: using the SDPA attention path")
        else:
            impl = requested
        te = impl == "transformer_engine"
        # Transformer Engine's norms are the only RMSNorm in megatron-core that support sequence
        # parallelism (the torch norm of the local spec refuses it), so SP needs TE.
        sp = config.parallel.sequence_parallel
        if sp is None:
            sp = te and config.parallel.tensor > 1
        if sp and not te:
            reason = te_problem if te_problem and requested == "auto" else f"transformer_impl {impl}"
            raise ConfigError(f"parallel.sequence_parallel needs CUDA with Transformer Engine ({reason})")
        # The fused softmax is used only by megatron's DotProductAttention (local), and its kernel comes
        # from Apex or Megatron-LM's own build: on only when it imports.
        softmax_fusion = cuda and impl == "local" and _import_problem("scaled_masked_softmax_cuda") is None
        grad_accum_fusion = cuda and _megatron_has_grad_accum_kernel()
        return cls(cuda=cuda, bf16=bf16, transformer_impl=impl,
                   sequence_parallel=bool(sp and config.parallel.tensor > 1),
                   masked_softmax_fusion=softmax_fusion, gradient_accumulation_fusion=grad_accum_fusion,
                   rope_fusion=te and _megatron_has_fused_rope(), notes=tuple(notes))


def transformer_config(config: TrainConfig, runtime: Runtime):
    from megatron.core.transformer import TransformerConfig

    m: ModelConfig = config.model
    dtype = torch.bfloat16 if runtime.bf16 else torch.float32
    return TransformerConfig(
        num_layers=m.num_layers,
        hidden_size=m.hidden_size,
        ffn_hidden_size=m.ffn_hidden_size,
        num_attention_heads=m.num_attention_heads,
        num_query_groups=m.num_query_groups,
        kv_channels=m.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=m.norm_eps,
        gated_linear_unit=True,
        activation_func=torch.nn.functional.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        qk_layernorm=m.qk_layernorm,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=m.init_method_std,
        # Both sizes must be set here too: without them PP silently builds every layer on every stage.
        tensor_model_parallel_size=config.parallel.tensor,
        pipeline_model_parallel_size=config.parallel.pipeline,
        sequence_parallel=runtime.sequence_parallel,
        bf16=runtime.bf16,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        autocast_dtype=dtype,
        # Initialising the full weight on CPU and splitting it makes TP=k start from exactly the TP=1
        # weights (same seed); on GPUs each rank initialises its shard on device, which is faster.
        use_cpu_initialization=not runtime.cuda,
        perform_initialization=True,
        apply_rope_fusion=runtime.rope_fusion,
        # The fused kernels are torch.compile-d; on CPU compiling them costs more than it saves.
        bias_activation_fusion=runtime.cuda,
        bias_dropout_fusion=runtime.cuda,
        # Each only where its kernel imports (Runtime.detect): Apex / Megatron-LM's build.
        masked_softmax_fusion=runtime.masked_softmax_fusion,
        gradient_accumulation_fusion=runtime.gradient_accumulation_fusion,
        deallocate_pipeline_outputs=runtime.cuda,
        attention_softmax_in_fp32=True,
    )


def layer_spec(tconfig, runtime: Runtime):
    """The decoder block spec of this rank's pipeline stage for ``runtime.transformer_impl``.

    ``transformer_engine``: megatron-core's TE spec as is. ``local``/``sdpa``: megatron-core's local
    spec with every norm the torch RMSNorm (megatron picks Apex's ``FusedLayerNorm`` for the final
    norm when Apex imports, and that norm refuses RMSNorm) and, for ``sdpa``, ``SDPAttention`` as
    the core attention of every layer.
    """
    from megatron.core.models.gpt import gpt_layer_specs
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    if runtime.transformer_engine:
        if not gpt_layer_specs.HAVE_TE:
            raise ConfigError("transformer_impl: Transformer Engine imports, but megatron-core could not load its "
                              "TE extension (megatron.core.extensions.transformer_engine); check the TE version")
        return gpt_layer_specs.get_gpt_decoder_block_spec(tconfig, use_transformer_engine=True,
                                                          normalization="RMSNorm")
    spec = gpt_layer_specs.get_gpt_decoder_block_spec(tconfig, use_transformer_engine=False, normalization="RMSNorm")
    spec.layer_norm = WrappedTorchNorm
    if runtime.transformer_impl == "sdpa":
        from training.attention import SDPAttention

        for layer in spec.layer_specs:
            layer.submodules.self_attention.submodules.core_attention = SDPAttention
    return spec


def build_model(config: TrainConfig, runtime: Runtime, vocab_size: int):
    """The model chunk of this rank's pipeline stage (not yet wrapped in DDP)."""
    from megatron.core import parallel_state
    from megatron.core.models.gpt import GPTModel

    tconfig = transformer_config(config, runtime)
    m = config.model
    spec = layer_spec(tconfig, runtime)
    model = GPTModel(
        config=tconfig,
        transformer_layer_spec=spec,
        vocab_size=m.padded_vocab_size(vocab_size),
        max_sequence_length=config.data.seq_length,
        pre_process=parallel_state.is_pipeline_first_stage(),
        post_process=parallel_state.is_pipeline_last_stage(),
        share_embeddings_and_output_weights=m.tie_embeddings,
        position_embedding_type="rope",
        rotary_base=int(m.rope_theta),
        rope_scaling=m.rope_scaling_factor is not None,
        rope_scaling_factor=m.rope_scaling_factor or 8.0,
    )
    if runtime.cuda:
        model.cuda(torch.cuda.current_device())
    return model
