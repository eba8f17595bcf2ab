"""The joint model's training data: every volume's axial slices (image + one-hot mask) encoded by the joint slice
autoencoder and stacked along depth, with the tumour vector of its label map; cached once.

Each volume is also left-right flipped (its vector recomputed: the centre moves to the other hemisphere), which
doubles the tumour positions the model sees. The training section's tumour vectors are written beside the weights
(``AttributeTable``): they normalise the conditioning and are the distribution unspecified attributes come from.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import Gem3dInputError
from ..io import save_json
from ..networks.latents import encode_slices
from ..networks.weights import load_weights
from .conditioning import mask_onehot
from .latent_cache import cached, encoder_md5, file_md5, latent_scale
from .slices import load_volumes
from .tumour_attributes import AttributeTable, tumour_attributes


def encode_stack(autoencoder, image: np.ndarray, label: np.ndarray, num_labels: int, device) -> torch.Tensor:
    """(X, Y, Z) image and label map -> (C, x, y, Z) latent stack (posterior means of the joint autoencoder)."""
    joint = torch.cat([torch.as_tensor(image, dtype=torch.float32)[None], mask_onehot(label, num_labels)])
    slices = joint.permute(3, 0, 1, 2).numpy()  # (Z, 1 + L, X, Y)
    return encode_slices(autoencoder, slices, device, batch=64).permute(1, 2, 3, 0).contiguous()


def load_or_build_stacks(
    datalist: str,
    section: str,
    grid,
    labels,
    modality: str,
    autoencoder,
    autoencoder_file: str,
    cache_dir: str,
    device="cpu",
    scale_file: str | None = None,
    table_file: str | None = None,
    limit=None,
    flip: bool = True,
) -> dict:
    """``{"scale", "cases": [{"id", "latent" (C, x, y, Z), "attributes"}]}``, cached by the encoder weights, the data
    and the grid; for the training section ``scale`` goes to ``scale_file`` and the tumour vectors to
    ``table_file``."""
    if not os.path.isfile(datalist):
        raise Gem3dInputError(f"datalist not found: {datalist} (build the demo set or set dataset_dir)")
    num_labels = labels.num_labels
    parts = [encoder_md5(autoencoder_file), file_md5(datalist), section, grid.as_dict(), labels.as_dict()]
    parts += [modality, limit, bool(flip), "joint-v1"]

    def build() -> dict:
        ae = load_weights(autoencoder, autoencoder_file, "joint autoencoder", device)
        cases, depth = [], None
        for case in tqdm(
            load_volumes(datalist, section, grid, num_labels, modality, limit), desc=f"encoding {section}"
        ):
            if depth not in (None, case["image"].shape[2]):
                raise Gem3dInputError(
                    f"{case['image_path']}: {case['image'].shape[2]} slices in model space, the other volumes "
                    f"{depth}; the joint model stacks whole volumes and needs one depth"
                )
            depth = case["image"].shape[2]
            for flipped in (False, True) if flip else (False,):
                image, label = (case["image"][::-1], case["label"][::-1]) if flipped else (case["image"], case["label"])
                image, label = np.ascontiguousarray(image), np.ascontiguousarray(label)
                cases.append(
                    {
                        "id": case["id"] + ("_flip" if flipped else ""),
                        "latent": encode_stack(ae, image, label, num_labels, device).half(),
                        "attributes": tumour_attributes(label, grid.spacing, labels.lesion_labels),
                    }
                )
        return {"scale": latent_scale(c["latent"] for c in cases), "cases": cases}

    cache = cached(parts, cache_dir, f"joint_stacks_{section}", build)
    if section == "training":
        if scale_file:
            save_json({"scale": cache["scale"]}, scale_file, overwrite=True)
        if table_file:
            save_json(AttributeTable([c["attributes"] for c in cache["cases"]]).as_dict(), table_file, overwrite=True)
    return cache


class StackDataset(Dataset):
    """Scaled latent stacks as ``image`` and their encoded tumour vectors as ``condition``; the vector is replaced
    by zeros (the "unconditional" input of classifier-free guidance) with probability ``condition_dropout``."""

    def __init__(self, cache: dict, table: AttributeTable, condition_dropout: float = 0.0):
        if not cache["cases"]:
            raise Gem3dInputError("no training volumes for the joint model")
        self.cases, self.scale, self.table = cache["cases"], float(cache["scale"]), table
        self.dropout = float(condition_dropout)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> dict:
        case = self.cases[i]
        vector = torch.from_numpy(self.table.encode(case["attributes"]))
        if torch.rand(()) < self.dropout:
            vector = torch.zeros_like(vector)
        return {"image": case["latent"].float() * self.scale, "condition": vector}
