"""EMA of the trainable weights only.

ignite's ``EMAHandler`` averages every parameter; for a frozen one, (1 - m) * w + m * w is not bit-exactly w, so
the EMA copy of a stage-2 network would drift from the stage-1 weights by rounding. Here frozen parameters are
copied, not averaged: the saved stage-2 file keeps stage 1's weights bit-identical.
"""

from __future__ import annotations

import torch
from ignite.engine import Engine
from ignite.handlers import EMAHandler


class TrainableEMAHandler(EMAHandler):
    @torch.no_grad()
    def _update_ema_model(self, engine: Engine, name: str) -> None:
        momentum = getattr(engine.state, name)
        for ema_p, model_p in zip(self.ema_model.parameters(), self.model.parameters()):
            if model_p.requires_grad:
                ema_p.mul_(1.0 - momentum).add_(model_p.data, alpha=momentum)
            else:
                ema_p.copy_(model_p.data)
        if self.handle_buffers == "update":
            for ema_b, model_b in zip(self.ema_model.buffers(), self.model.buffers()):
                try:
                    ema_b.mul_(1.0 - momentum).add_(model_b.data, alpha=momentum)
                except RuntimeError:  # integer buffers (e.g. counters) cannot be averaged
                    ema_b.data = model_b.data
        elif self.handle_buffers == "copy":
            for ema_b, model_b in zip(self.ema_model.buffers(), self.model.buffers()):
                ema_b.data = model_b.data
