"""Pseudo-3D layers for volumetric tuning: a 1D convolution and a self-attention across the slices of a window.

MONAI's ``DiffusionModelUNet`` is 2D; these layers are attached to its residual and attention blocks as forward
hooks (``out + layer(out)``), so the UNet's own parameter names stay those of stage 1 and stage-1 checkpoints load
unchanged. Both layers are zero-initialised: stage 2 starts exactly at stage 1's function.
"""

from __future__ import annotations

import torch
from einops import rearrange
from monai.networks.blocks import SpatialAttentionBlock
from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock, get_timestep_embedding
from torch import nn


class FrameCount:
    """Shared, mutable window length: set by the window UNet before each forward, read by the hooks."""

    n: int = 1


class TemporalConv(nn.Module):
    """Residual 1D convolution over the slice axis, per pixel and channel group."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        self.norm = nn.GroupNorm(min(32, channels), channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        z = rearrange(x, "(b n) c h w -> (b h w) c n", n=n)
        z = self.conv(torch.nn.functional.silu(self.norm(z)))
        return rearrange(z, "(b h w) c n -> (b n) c h w", h=h, w=w)


def _slice_positions(n: int, dim: int, device, dtype) -> torch.Tensor:
    """Sinusoidal slice positions from MONAI's timestep table, laid out as the trained weights expect: sine and cosine
    of each frequency side by side (MONAI puts all cosines first)."""
    emb = get_timestep_embedding(torch.arange(n, device=device), dim)  # (n, [cos f0 .. cos f_h-1, sin f0 ..])
    return rearrange(emb.view(n, 2, dim // 2).flip(1), "n two h -> n (h two)").to(dtype)


class TemporalAttention(nn.Module):
    """Residual multi-head self-attention over the slice axis at every pixel (slice positions added)."""

    def __init__(self, channels: int, head_channels: int = 32):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, max(1, channels // head_channels), batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        z = rearrange(x, "(b n) c h w -> (b h w) n c", n=n)
        z = self.norm(z) + _slice_positions(n, z.shape[-1], z.device, z.dtype)
        z, _ = self.attn(z, z, z, need_weights=False)
        return rearrange(z, "(b h w) n c -> (b n) c h w", h=h, w=w)


def attach_pseudo3d(unet: nn.Module, frames: FrameCount, kernel_size: int = 3) -> nn.ModuleDict:
    """Create one temporal layer per residual / attention block of ``unet`` and hook it in; return the layers."""
    layers = nn.ModuleDict()
    for name, module in unet.named_modules():
        if isinstance(module, DiffusionUNetResnetBlock):
            layer = TemporalConv(module.out_channels, kernel_size)
        elif isinstance(module, SpatialAttentionBlock):
            layer = TemporalAttention(module.norm.num_channels)
        else:
            continue
        layers[name.replace(".", "_")] = layer

        def hook(_mod, _inputs, output, layer=layer):
            return output + layer(output, frames.n)

        module.register_forward_hook(hook)
    return layers
