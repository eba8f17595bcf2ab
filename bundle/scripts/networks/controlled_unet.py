"""The 3D backend's denoiser under mask control: a frozen MONAI ``DiffusionModelUNet`` and a MONAI ``ControlNet``.

MONAI has both networks and a ``ControlNetDiffusionInferer``, but its trainers call ``inferer(inputs, network, ...)``
with one network: this module is that one network (the mask arrives as ``context``, as ``DiffusionInferer`` passes
conditions in its ``crossattn`` mode). The ControlNet starts as a copy of the UNet's encoder (MONAI's
``copy_model_state``) with its zero-initialised output convolutions, so training starts at the unconditional model.
"""

from __future__ import annotations

import torch
from monai.networks.utils import copy_model_state
from torch import nn


class ControlledUNet(nn.Module):
    def __init__(self, unet: nn.Module, controlnet: nn.Module, conditioning_scale: float = 1.0, copy_encoder=True):
        super().__init__()
        self.unet, self.controlnet, self.conditioning_scale = unet, controlnet, float(conditioning_scale)
        self.unet.requires_grad_(False)
        if copy_encoder:
            copy_model_state(self.controlnet, self.unet.state_dict())  # shared names: the encoder and time MLP

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:  # no mask: the unconditional UNet
            return self.unet(x, timesteps)
        down, mid = self.controlnet(
            x=x, timesteps=timesteps, controlnet_cond=context, conditioning_scale=self.conditioning_scale
        )
        return self.unet(x, timesteps, down_block_additional_residuals=down, mid_block_additional_residual=mid)
