"""Build the Llama-style megatron-core ``GPTModel`` for one pipeline stage of a run."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from training.config import ConfigError, TrainConfig
from training.presets import ModelConfig


@dataclass(frozen=True)
class Runtime:
    """What the hardware decides: device kind, precision, Transformer Engine, sequence parallel."""

    cuda: bool
    bf16: bool
    transformer_engine: bool
    sequence_parallel: bool

    @classmethod
    def detect(cls, config: TrainConfig) -> Runtime:
        cuda = torch.cuda.is_available()
        bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda)
        # Transformer Engine's norms are the only RMSNorm in megatron-core that support sequence
        # parallelism (the torch norm of the local spec refuses it), so SP needs TE.
        te = cuda and importlib.util.find_spec("transformer_engine") is not None
        sp = config.parallel.sequence_parallel
        if sp is None:
            sp = te and config.parallel.tensor > 1
        if sp and not te:
            raise ConfigError("parallel.sequence_parallel needs CUDA with Transformer Engine installed")
        return cls(cuda=cuda, bf16=bf16, transformer_engine=te,
                   sequence_parallel=bool(sp and config.parallel.tensor > 1))


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
        apply_rope_fusion=runtime.transformer_engine,
        # The fused kernels are torch.compile-d; on CPU compiling them costs more than it saves.
        bias_activation_fusion=runtime.cuda,
        bias_dropout_fusion=runtime.cuda,
        masked_softmax_fusion=runtime.cuda,
        gradient_accumulation_fusion=False,  # needs Apex
        deallocate_pipeline_outputs=runtime.cuda,
        attention_softmax_in_fp32=True,
    )


def build_model(config: TrainConfig, runtime: Runtime, vocab_size: int):
    """The model chunk of this rank's pipeline stage (not yet wrapped in DDP)."""
    from megatron.core import parallel_state
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec

    tconfig = transformer_config(config, runtime)
    m = config.model
    spec = get_gpt_decoder_block_spec(tconfig, use_transformer_engine=runtime.transformer_engine,
                                      normalization="RMSNorm")
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
