"""Core attention on ``torch.nn.functional.scaled_dot_product_attention`` for megatron-core's local spec.

Why: without Transformer Engine, megatron-core 0.16's local spec uses ``DotProductAttention``, which
materialises the full ``[b, heads, s, s]`` score matrix per layer (about 6 GiB per layer for the 1B
preset at micro-batch 2, sequence 4096) and, with ``masked_softmax_fusion``, needs the
``scaled_masked_softmax_cuda`` kernel that only Apex or Megatron-LM's own build provides. PyTorch's
SDPA runs flash / memory-efficient kernels on CUDA (and a math kernel on CPU) with neither.

``SDPAttention`` takes the place of ``DotProductAttention`` as the ``core_attention`` submodule of a
``SelfAttention`` spec: same constructor arguments, same tensor layout in and out
(``[s, b, heads, head_dim]`` in, ``[s, b, heads * head_dim]`` out), causal, grouped-query attention
without repeating keys and values, any dtype SDPA supports (bf16 and fp32 here).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.utils import is_layer_window_attention
from megatron.core.utils import divide


class SDPAttention(MegatronModule):
    """``DotProductAttention``'s interface over ``F.scaled_dot_product_attention`` (no parameters)."""

    def __init__(
        self,
        config: TransformerConfig,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection: ProcessGroupCollection | None = None,
    ) -> None:
        super().__init__(config=config)
        # What this module does not implement fails here, at build time, not in the first step.
        if config.context_parallel_size != 1:
            raise ValueError("SDPAttention: context parallelism needs Transformer Engine's attention")
        if config.softmax_type != "vanilla":
            raise ValueError(f"SDPAttention: softmax_type {config.softmax_type!r} is not supported")
        if is_layer_window_attention(config.window_size, config.window_attn_skip_freq, layer_number):
            raise ValueError("SDPAttention: sliding-window attention is not supported")
        if pg_collection is None:
            pg_collection = ProcessGroupCollection.use_mpu_process_groups(required_pgs=["tp"])
        tp_size = pg_collection.tp.size()
        self.layer_number = max(1, layer_number)
        self.attn_mask_type = attn_mask_type
        self.heads_per_partition = divide(config.num_attention_heads, tp_size)
        self.query_groups_per_partition = divide(config.num_query_groups, tp_size)
        self.hidden_size_per_partition = divide(config.kv_channels * config.num_attention_heads, tp_size)
        # DotProductAttention divides the scale by the layer number with apply_query_key_layer_scaling
        # and multiplies it back inside its fp32 softmax: the net scale is this one.
        self.softmax_scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(config.kv_channels)
        self.dropout_p = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type: AttnMaskType | None = None,
        attention_bias: Any = None,
        packed_seq_params: Any = None,
    ) -> torch.Tensor:
        if packed_seq_params is not None or attention_bias is not None:
            raise ValueError("SDPAttention: packed sequences and attention bias need Transformer Engine")
        mask_type = attn_mask_type if attn_mask_type is not None else self.attn_mask_type
        # [s, b, heads, d] -> [b, heads, s, d]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        if attention_mask is not None:
            # Megatron's masks are True where attention is NOT allowed; SDPA's boolean masks the opposite.
            sdpa_mask, causal = ~attention_mask.to(torch.bool), False
        else:
            sdpa_mask, causal = None, mask_type == AttnMaskType.causal and q.shape[2] > 1
        dropout = self.dropout_p if self.training else 0.0
        kwargs = {"attn_mask": sdpa_mask, "dropout_p": dropout, "is_causal": causal, "scale": self.softmax_scale,
                  "enable_gqa": self.heads_per_partition != self.query_groups_per_partition}
        if dropout > 0.0 and not self.config.sequence_parallel:
            with tensor_parallel.get_cuda_rng_tracker().fork():  # as DotProductAttention does
                context = F.scaled_dot_product_attention(q, k, v, **kwargs)
        else:
            context = F.scaled_dot_product_attention(q, k, v, **kwargs)
        # [b, heads, s, d] -> [s, b, heads * d]
        context = context.permute(2, 0, 1, 3).contiguous()
        return context.view(*context.shape[:2], self.hidden_size_per_partition)
