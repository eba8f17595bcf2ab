"""Building the network of each training stage (stage 2 starts from stage 1's weights)."""

from __future__ import annotations

import os

import torch

from ..data.latent_cache import DECODER_PREFIXES
from ..errors import Gem3dInputError
from ..networks.weights import load_weights
from ..networks.window_unet import freeze_spatial


def volume_network(network: torch.nn.Module, stage1_weights: str, device) -> torch.nn.Module:
    """Stage 2: load stage-1 weights into a WindowUNet with pseudo-3D layers and freeze all but those layers.

    Both happen here, before anything copies or wraps the network (EMA keeps a copy; DDP records which parameters
    need gradients when it is built). Only the temporal layers may be missing from the stage-1 file."""
    if getattr(network, "temporal", None) is None:
        raise Gem3dInputError("stage 2 needs the window network built with temporal=true")
    if not os.path.isfile(stage1_weights):
        raise Gem3dInputError(f"stage-1 weights not found: {stage1_weights} (run train_window.json first)")
    state = torch.load(stage1_weights, map_location="cpu", weights_only=True)
    result = network.load_state_dict(state, strict=False)
    bad = [k for k in result.missing_keys if not k.startswith("temporal.")] + list(result.unexpected_keys)
    if bad:
        raise Gem3dInputError(f"stage-1 weights {stage1_weights} do not match the window network: {bad[:6]}")
    freeze_spatial(network)
    return network.to(device)


def decoder_network(network: torch.nn.Module, weights: str, device) -> torch.nn.Module:
    """Decoder fine-tuning: load a trained ``AutoencoderKL`` and freeze everything that makes the latents.

    The encoder and the posterior convolutions keep requires_grad False, so every latent, the cached latents and
    the latent scale stay bit-identical and the diffusion stages trained on them stay valid."""
    load_weights(network, weights, "autoencoder", device)
    for name, param in network.named_parameters():
        param.requires_grad_(name.startswith(DECODER_PREFIXES))
    return network.train()
