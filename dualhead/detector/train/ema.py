"""Exponential moving average of the weights (ultralytics ModelEMA): decay ramps up as
decay * (1 - exp(-updates / tau)) so early, poor weights are forgotten quickly."""

from __future__ import annotations

import copy
import math

import torch


class ModelEMA:
    def __init__(self, model: torch.nn.Module, decay: float = 0.9999, tau: float = 500.0, updates: int = 0):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, model: torch.nn.Module):
        """ema = d * ema + (1 - d) * model for every float entry (BN running stats included;
        counters are copied). One foreach multiply and add over all tensors rather than a few
        small ops per tensor. The pairs of tensors are collected once per model (its
        parameters and buffers are updated in place, so the same tensors serve every step)."""
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        ema, cur, ints = self._pairs(model)
        torch._foreach_mul_(ema, d)
        torch._foreach_add_(ema, cur, alpha=1 - d)
        for v, m in ints:
            v.copy_(m)

    def _pairs(self, model):
        if getattr(self, "_paired", None) is not model:
            msd = model.state_dict()
            ema, cur, ints = [], [], []
            for k, v in self.module.state_dict().items():
                if v.dtype.is_floating_point:
                    ema.append(v)
                    cur.append(msd[k].detach())
                else:
                    ints.append((v, msd[k]))
            self._paired, self._lists = model, (ema, cur, ints)
        return self._lists

    def state_dict(self):
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, sd):
        self.module.load_state_dict(sd["module"])
        self.updates = sd["updates"]
