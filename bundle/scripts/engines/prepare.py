"""Batch preparation for the diffusion trainers (MONAI's v-prediction batches plus the conditioning mode)."""

from __future__ import annotations

from monai.engines.utils import VPredictionPrepareBatch


class ConditionedVPredictionBatch(VPredictionPrepareBatch):
    """MONAI's ``VPredictionPrepareBatch`` that also tells ``DiffusionInferer`` how to use the condition
    ('concat' for the window model's per-slice channels, 'crossattn' for the informed model's position)."""

    def __init__(self, scheduler, num_train_timesteps: int, condition_name: str, mode: str = "concat"):
        super().__init__(scheduler=scheduler, num_train_timesteps=num_train_timesteps, condition_name=condition_name)
        self.mode = mode

    def __call__(self, batchdata, device=None, non_blocking: bool = False, **kwargs):
        images, target, args, infer_kwargs = super().__call__(batchdata, device, non_blocking, **kwargs)
        infer_kwargs["mode"] = self.mode
        return images, target, args, infer_kwargs
