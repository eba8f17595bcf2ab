"""Whole-volume latents of the 3D backend: every training volume encoded once by the 3D autoencoder and cached.

MedLoRD trains its latent diffusion UNet on pre-encoded whole-volume latents; here they come from the same
model-space volumes as GEM-3D's (``load_volumes``), padded at the end of each axis to a multiple the networks need,
and each volume also left-right flipped (the demo's 32 training volumes are few for a 3D model).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from monai.transforms import DivisiblePad
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import Gem3dInputError
from ..io import save_json
from ..networks.latents import encode_volume
from ..networks.weights import load_weights
from .conditioning import mask_onehot
from .latent_cache import cached, encoder_md5, file_md5, latent_scale
from .slices import load_volumes


def pad_volume(volume: np.ndarray, multiple: int) -> np.ndarray:
    """(X, Y, Z) -> each size up to the next multiple of ``multiple``: zeros (background) after the last voxel, so
    ``padded[:X, :Y, :Z]`` is the volume again."""
    return np.asarray(DivisiblePad(k=int(multiple), method="end")(np.asarray(volume)[None])[0])


def load_or_build_volumes(
    datalist: str,
    section: str,
    grid,
    num_labels: int,
    modality: str,
    autoencoder,
    autoencoder_file: str,
    cache_dir: str,
    multiple: int,
    device="cpu",
    scale_file: str | None = None,
    limit=None,
    flip: bool = True,
) -> dict:
    """``{"scale", "cases": [{"id", "latent" (C, x, y, z), "mask" (X, Y, Z') label map}]}``, cached by the encoder
    weights, the data, the grid and the padding; ``scale`` is written to ``scale_file`` for the training section."""
    if not os.path.isfile(datalist):
        raise Gem3dInputError(f"datalist not found: {datalist} (build the demo set or set dataset_dir)")
    parts = [encoder_md5(autoencoder_file), file_md5(datalist), section, grid.as_dict(), num_labels, modality]
    parts += [limit, int(multiple), bool(flip)]

    def build() -> dict:
        ae = load_weights(autoencoder, autoencoder_file, "3D autoencoder", device)
        cases = []
        for case in tqdm(
            load_volumes(datalist, section, grid, num_labels, modality, limit), desc=f"encoding {section}"
        ):
            image, mask = pad_volume(case["image"], multiple), pad_volume(case["label"], multiple)
            for flipped in (False, True) if flip else (False,):
                img, lab = (image[::-1], mask[::-1]) if flipped else (image, mask)
                cases.append(
                    {
                        "id": case["id"] + ("_flip" if flipped else ""),
                        "latent": encode_volume(ae, img.copy(), device).half(),
                        "mask": torch.from_numpy(lab.astype(np.int8)),
                    }
                )
        return {"scale": latent_scale(c["latent"] for c in cases), "cases": cases}

    cache = cached(parts, cache_dir, f"volume_latents_{section}", build)
    if scale_file and section == "training":
        save_json({"scale": cache["scale"]}, scale_file, overwrite=True)
    return cache


class VolumeLatentDataset(Dataset):
    """Scaled whole-volume latents as ``image``; with ``condition=True`` also the one-hot mask at image resolution
    as ``condition``, replaced by zeros with probability ``condition_dropout`` (the whole condition at once)."""

    def __init__(self, cache: dict, num_labels: int, condition: bool = False, condition_dropout: float = 0.0):
        if not cache["cases"]:
            raise Gem3dInputError("no training volumes for the 3D backend")
        self.cases, self.scale, self.num_labels = cache["cases"], float(cache["scale"]), int(num_labels)
        self.condition, self.dropout = bool(condition), float(condition_dropout)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> dict:
        case = self.cases[i]
        item = {"image": case["latent"].float() * self.scale}
        if self.condition:
            mask = mask_onehot(case["mask"], self.num_labels)
            item["condition"] = torch.zeros_like(mask) if torch.rand(()) < self.dropout else mask
        return item
