"""Encode training volumes once with the autoencoder and cache slice latents + mask occupancy on disk.

The cache is keyed by the weights that make the latents (the encoder side of the autoencoder) and the dataset, so a
retrained encoder or another dataset rebuilds it, a fine-tuned decoder does not; diffusion training then never runs
the encoder.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import torch
from tqdm import tqdm

from ..errors import Gem3dInputError
from ..io import save_json, save_torch
from ..networks.latents import encode_slices
from ..networks.weights import load_weights
from .conditioning import mask_to_latent_grid
from .model_space import ModelGrid, write_model_grid
from .slices import load_volumes

# the parts of MONAI's AutoencoderKL that do not shape the latents (decoder fine-tuning trains only these)
DECODER_PREFIXES = ("decoder.", "post_quant_conv.")


def encoder_md5(weights: str) -> str:
    """md5 of every autoencoder tensor outside ``DECODER_PREFIXES`` (names and values)."""
    if not os.path.isfile(weights):
        raise Gem3dInputError(f"autoencoder weights not found: {weights} (train them first, see bundle/docs/README.md)")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    h = hashlib.md5()
    for name in sorted(k for k in state if not k.startswith(DECODER_PREFIXES)):
        h.update(name.encode())
        h.update(state[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def file_md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached(parts: list, cache_dir: str, prefix: str, build) -> dict:
    """``build()``'s result, stored under ``cache_dir`` keyed by ``parts`` (what makes it: weights, data, grid...)
    and loaded from there when the same parts come again; written atomically."""
    digest = hashlib.md5(json.dumps(parts).encode()).hexdigest()[:12]
    path = os.path.join(cache_dir, f"{prefix}_{digest}.pt")
    if os.path.isfile(path):
        return torch.load(path, map_location="cpu", weights_only=False)
    cache = build()
    save_torch(cache, path, overwrite=True)
    return cache


def latent_scale(latents) -> float:
    """1 / std of all training latents (so that the diffusion model sees unit-variance data)."""
    std = torch.cat([torch.as_tensor(x).float().flatten() for x in latents]).std().item()
    return 1.0 / max(std, 1e-6)


def load_or_build(
    datalist: str,
    section: str,
    grid: ModelGrid,
    num_labels: int,
    modality: str,
    autoencoder,
    autoencoder_file: str,
    cache_dir: str,
    device="cpu",
    scale_file: str | None = None,
    limit=None,
    grid_file: str | None = None,
) -> dict:
    """Return ``{"scale", "cases": [{"id", "latent" (Z,C,h,w), "mask" (Z,L,h,w)}]}`` from cache or by encoding.

    ``scale`` (1 / std of the training latents) is written to ``scale_file`` and the model grid (with the slice
    counts seen) to ``grid_file`` for inference when building the training section.
    """
    if not os.path.isfile(datalist):
        raise Gem3dInputError(f"datalist not found: {datalist} (build the demo set or set dataset_dir)")
    parts = [encoder_md5(autoencoder_file), file_md5(datalist), section, grid.as_dict(), num_labels, modality, limit]

    def build() -> dict:
        ae = load_weights(autoencoder, autoencoder_file, "autoencoder", device)
        cases = []
        for case in tqdm(
            load_volumes(datalist, section, grid, num_labels, modality, limit), desc=f"encoding {section}"
        ):
            latent = encode_slices(ae, np.moveaxis(case["image"], 2, 0), device, batch=64)
            mask = torch.from_numpy(np.moveaxis(case["label"], 2, 0).copy())
            cases.append(
                {
                    "id": case["id"],
                    "latent": latent.half(),
                    "mask": mask_to_latent_grid(mask, num_labels, latent.shape[-1]).half(),
                }
            )
        return {"scale": latent_scale(c["latent"] for c in cases), "cases": cases}

    cache = cached(parts, cache_dir, f"latents_{section}", build)
    if scale_file and section == "training":
        save_json({"scale": cache["scale"]}, scale_file, overwrite=True)
    if grid_file and section == "training":
        write_model_grid(grid, cache["cases"], grid_file)
    return cache
