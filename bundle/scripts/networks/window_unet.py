"""The GEM-3D window model: a 2D diffusion UNet that denoises a window of n slice latents at once.

Input ``x`` is (B, C, n, h, w): the noisy latents plus the concatenated conditions of each slice (one-hot mask
slice at latent resolution, the informed slice's latent, the slice's offset from the informed slice). The 2D UNet
sees the n slices as a batch with one shared timestep per window; with ``temporal=True`` the pseudo-3D layers
mix information across the slices (stage 2).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from .pseudo3d import FrameCount, attach_pseudo3d


class WindowUNet(nn.Module):
    def __init__(self, unet: nn.Module, temporal: bool = False, temporal_kernel: int = 3):
        super().__init__()
        self.unet = unet
        self.frames = FrameCount()
        self.temporal = attach_pseudo3d(unet, self.frames, temporal_kernel) if temporal else None

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, _, n = x.shape[:3]
        self.frames.n = n
        t = timesteps.reshape(-1).expand(b) if timesteps.numel() == 1 else timesteps
        out = self.unet(rearrange(x, "b c n h w -> (b n) c h w"), t.repeat_interleave(n))
        return rearrange(out, "(b n) c h w -> b c n h w", b=b)


def freeze_spatial(model: nn.Module) -> list[nn.Parameter]:
    """Stage 2: only the pseudo-3D layers train. Every other parameter gets ``requires_grad=False`` (so no
    gradient is computed for it at all); returns the trainable parameters for the optimiser."""
    net = model.module if hasattr(model, "module") else model
    if net.temporal is None:
        raise ValueError("freeze_spatial needs a WindowUNet built with temporal=True")
    for p in net.parameters():
        p.requires_grad_(False)
    for p in net.temporal.parameters():
        p.requires_grad_(True)
    return [p for p in net.parameters() if p.requires_grad]
