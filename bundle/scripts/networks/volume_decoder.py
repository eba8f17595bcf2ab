"""A decoder with cross-slice layers (Video-LDM / Stable Video Diffusion style) for the 2D slice autoencoder.

The slices of one volume are decoded together: after each residual block of the 2D decoder a residual 1D
convolution across the slices (``SliceConv``, zero-initialised) mixes neighbouring slices, so the
decoder starts exactly at the 2D decoder's output and learns to decode a stack of slice latents into a volume that is
consistent along z. The encoder and the posterior convolutions are a frozen copy of the 2D autoencoder's, so every
latent, the latent cache and every diffusion stage trained on them stay valid.
"""

from __future__ import annotations

import copy

import torch
from einops import rearrange
from monai.networks.nets import AutoencoderKL
from monai.networks.nets.autoencoderkl import AEKLResBlock
from torch import nn

from ..data.latent_cache import DECODER_PREFIXES
from .weights import load_weights


class SliceConv(nn.Module):
    """Residual 1D convolution across the slices at every pixel, zero-initialised.

    Unlike the window UNet's ``pseudo3d.TemporalConv`` (normalised over the whole window), the input is normalised
    slice by slice, so a slice's output depends on its neighbours within the kernel only, whatever the stack's
    length: stacks of 16 slices in training, whole volumes with empty end slices at inference."""

    def __init__(self, channels: int, kernel_size: int = 3, groups: int = 16):
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, channels), channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        z = rearrange(torch.nn.functional.silu(self.norm(x)), "(b n) c h w -> (b h w) c n", n=n)
        return rearrange(self.conv(z), "(b h w) c n -> (b n) c h w", h=h, w=w)


class VolumeDecoder(nn.Module):
    """``AutoencoderKL`` (2D) whose decoder sees the neighbouring slices; state dict: ``autoencoder.*`` (the 2D
    autoencoder's own names) + ``temporal.*``.

    ``latent_noise``: in training, every slice's latent gets its own Gaussian noise of a standard deviation drawn
    uniformly in [0, latent_noise] per stack (in units of the latents' std), so the decoder learns to absorb the
    slice-to-slice inconsistency of sampled latents, not only to reproduce encoded ones. ``train_spatial``: the 2D
    decoder trains too (else only the cross-slice layers do)."""

    def __init__(
        self, autoencoder: AutoencoderKL, kernel_size: int = 3, latent_noise: float = 0.0, train_spatial: bool = False
    ):
        super().__init__()
        # a copy: the config's autoencoder instance is shared with the encoding path, which must stay 2D
        self.autoencoder = copy.deepcopy(autoencoder)
        self.latent_noise = float(latent_noise)
        blocks = self.autoencoder.decoder.blocks
        self.temporal = nn.ModuleDict(
            {
                str(i): SliceConv(b.out_channels, kernel_size)
                for i, b in enumerate(blocks)
                if isinstance(b, AEKLResBlock)
            }
        )
        for name, param in self.autoencoder.named_parameters():
            param.requires_grad_(bool(train_spatial) and name.startswith(DECODER_PREFIXES))

    def encode(self, slices: torch.Tensor):
        """(N, 1, S, S) slices -> posterior (mu, sigma), exactly the 2D autoencoder's."""
        return self.autoencoder.encode(slices)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, N, C, h, w) latents of B stacks of N consecutive slices (in order) -> (B, N, 1, S, S) images."""
        n = latents.shape[1]
        x = self.autoencoder.post_quant_conv(latents.flatten(0, 1))
        # MONAI's Decoder runs its blocks in one loop with no hook between them, so the loop is written out here
        for i, block in enumerate(self.autoencoder.decoder.blocks):
            x = block(x)
            if str(i) in self.temporal:
                x = x + self.temporal[str(i)](x, n)
        return x.unflatten(0, (-1, n))

    def forward(self, volumes: torch.Tensor):
        """(B, 1, S, S, N) stacks of slices -> (reconstruction of the same shape, mu, sigma), the shape of
        ``AutoencoderKL``'s output that ``KLAutoencoderLoss`` takes; latent noise in training mode."""
        return self._round_trip(volumes, self.training)

    def reconstruct(self, volumes: torch.Tensor) -> torch.Tensor:
        """Deterministic round trip of (B, 1, S, S, N) stacks (posterior means, no latent noise)."""
        return self._round_trip(volumes, False)[0]

    def _round_trip(self, volumes: torch.Tensor, noisy: bool):
        b = volumes.shape[0]
        slices = rearrange(volumes, "b c h w n -> (b n) c h w")
        with torch.no_grad():
            mu, sigma = self.encode(slices)
        z = mu.unflatten(0, (b, -1))
        if noisy and self.latent_noise > 0:
            level = torch.rand(b, 1, 1, 1, 1, device=z.device) * self.latent_noise
            z = z + level * torch.randn_like(z)
        recon = self.decode(z)
        return rearrange(recon, "b n c h w -> b c h w n"), mu, sigma


def volume_decoder_network(network: VolumeDecoder, autoencoder_weights: str, device) -> VolumeDecoder:
    """Training start: the 2D autoencoder's weights in the wrapped autoencoder, cross-slice layers at zero."""
    load_weights(network.autoencoder, autoencoder_weights, "autoencoder", device)
    return network.to(device).train()
