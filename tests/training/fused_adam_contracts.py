"""The state layouts of Apex's and Transformer Engine's ``FusedAdam``, which cannot be installed here
(both need CUDA builds), written out in plain torch for the optimizer-state tests.

What is copied, and from where (read, not run):

- Apex ``apex/optimizers/fused_adam.py`` (NVIDIA/apex master): per-parameter state ``exp_avg`` and
  ``exp_avg_sq`` created on the first step; the step count is ``group['step']`` (an int, incremented
  once per ``step()`` per group); ``state_dict``/``load_state_dict`` are torch's.
- Transformer Engine ``transformer_engine/pytorch/optimizers/fused_adam.py`` (NVIDIA/TransformerEngine
  2.x): per-parameter state ``exp_avg``, ``exp_avg_sq`` and, with master weights, ``master_param``;
  ``group["step"]``; ``state_dict()`` replaces every state entry by ``get_unscaled_state(param, name)``,
  which looks ``name`` up in ``name_to_dtype_map`` (those three names only, so a ``step`` entry
  raises ``KeyError: 'step'``); ``load_state_dict`` sets every entry through ``set_scaled_state``.

The update itself is Adam/AdamW with bias correction, as both kernels compute it (fp32 states here).
"""

from __future__ import annotations

from copy import deepcopy
from itertools import chain

import torch


class _FusedAdamMath(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, bias_correction=True, betas=(0.9, 0.999), eps=1e-8, adam_w_mode=True,
                 weight_decay=0.0, **_ignored) -> None:
        super().__init__(params, {"lr": lr, "bias_correction": bias_correction, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay})
        self.adam_w_mode = adam_w_mode

    def _init_state(self, param: torch.Tensor) -> None:
        self.state[param]["exp_avg"] = torch.zeros_like(param, dtype=torch.float32)
        self.state[param]["exp_avg_sq"] = torch.zeros_like(param, dtype=torch.float32)

    @torch.no_grad()
    def step(self, closure=None, **_ignored):
        for group in self.param_groups:
            if len(group["params"]) == 0:
                continue
            group["step"] = group["step"] + 1 if "step" in group else 1
            step, (beta1, beta2) = group["step"], group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:
                    self._init_state(p)
                grad = p.grad.float()
                if not self.adam_w_mode and group["weight_decay"]:
                    grad = grad + group["weight_decay"] * p
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                c1 = 1 - beta1**step if group["bias_correction"] else 1.0
                c2 = 1 - beta2**step if group["bias_correction"] else 1.0
                update = (m / c1) / ((v / c2).sqrt() + group["eps"])
                if self.adam_w_mode and group["weight_decay"]:
                    update = update + group["weight_decay"] * p
                p.add_(update, alpha=-group["lr"])
        return None


class ApexFusedAdam(_FusedAdamMath):
    """Apex's layout: torch's state_dict; step in the param group."""


class TEFusedAdam(_FusedAdamMath):
    """Transformer Engine's layout and its state_dict/load_state_dict overrides (fp32 states)."""

    def __init__(self, params, *args, master_weights=False, **kwargs) -> None:
        super().__init__(params, *args, **kwargs)
        self.master_weights = master_weights
        self.name_to_dtype_map = {"exp_avg": torch.float32, "exp_avg_sq": torch.float32,
                                  "master_param": torch.float32}

    def initialize_state(self, param, store_param_remainders=False) -> None:
        self._init_state(param)

    def get_unscaled_state(self, param, state_name):
        dtype = self.name_to_dtype_map[state_name]  # KeyError for anything else, e.g. "step"
        assert self.state[param][state_name].dtype == dtype
        return self.state[param][state_name].float()

    def set_scaled_state(self, param, state_name, unscaled_state) -> None:
        state = self.state[param]
        if state_name not in state:
            state[state_name] = torch.empty_like(param, dtype=self.name_to_dtype_map[state_name])
        state[state_name].copy_(unscaled_state)

    def _saved_to_live(self, state_dict) -> dict:
        """Saved parameter index -> this optimizer's parameter, group by group (as TE pairs them)."""
        saved_groups = deepcopy(state_dict["param_groups"])
        return dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                        chain.from_iterable(g["params"] for g in self.param_groups), strict=True))

    def state_dict(self):
        state_dict = super().state_dict()
        id_map = self._saved_to_live(state_dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                param = id_map[k]
                state_dict["state"][k] = {name: self.get_unscaled_state(param, name) for name in v}
        return state_dict

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        id_map = self._saved_to_live(state_dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                param = id_map[k]
                self.state[param] = {}
                for name in v:
                    if v[name] is not None:
                        self.set_scaled_state(param, name, v[name].float())
