"""3D mask augmentation for counterfactual masks: left-right flip, small rotations, lesion shift toward the centre.

Applied to the whole volume at once (so the mask stays volumetrically consistent). Which labels are lesions, and
which label fills the space a lesion leaves, come from the label set. The CT preset only rotates. Every drawn
parameter is returned so that the record of a synthesis reproduces it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from monai.transforms import Flip, Rotate

from ..errors import Gem3dInputError
from .label_set import LabelSet


@dataclass
class AugmentSettings:
    flip: bool = True
    max_rotation_deg: float = 2.5
    max_shift_fraction: float = 0.3  # lesions move by up to this fraction of their distance to the anatomy's centre

    @classmethod
    def presets(cls) -> dict:
        """The named presets (the main job's ``augment``, the app's ``augment`` parameter)."""
        return {
            "none": cls(flip=False, max_rotation_deg=0.0, max_shift_fraction=0.0),
            "mri": cls(),
            "ct": cls(flip=False, max_rotation_deg=2.5, max_shift_fraction=0.0),
        }

    @classmethod
    def preset(cls, name: str) -> "AugmentSettings":
        presets = cls.presets()
        if name not in presets:
            raise Gem3dInputError(f"unknown augmentation preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]


def augment_mask(
    mask: np.ndarray, settings: AugmentSettings, rng: np.random.Generator, labels: LabelSet
) -> tuple[np.ndarray, dict]:
    """Return the augmented (X, Y, Z) RAS mask and the parameters drawn."""
    out = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None]
    params: dict = {"settings": asdict(settings)}
    if settings.flip:
        params["flip_lr"] = bool(rng.random() < 0.5)
        if params["flip_lr"]:
            out = Flip(spatial_axis=0)(out)
    if settings.max_rotation_deg > 0:
        deg = rng.uniform(-settings.max_rotation_deg, settings.max_rotation_deg, 3)
        params["rotation_deg"] = deg.round(4).tolist()
        out = Rotate(angle=np.deg2rad(deg).tolist(), keep_size=True, mode="nearest", padding_mode="zeros")(out)
    arr = np.asarray(out[0]).round().astype(np.int16)
    if settings.max_shift_fraction > 0 and labels.lesion_labels:
        frac = float(rng.uniform(0, settings.max_shift_fraction))
        fill = labels.anatomy_labels[0] if labels.anatomy_labels else 0
        arr, shift = _shift_lesions(arr, frac, labels.lesion_labels, fill)
        params["lesion_shift_fraction"], params["lesion_shift_voxels"] = round(frac, 4), shift
    elif settings.max_shift_fraction > 0:
        params["lesion_shift_voxels"] = None  # the label set names no lesions: nothing to move
    return arr, params


def _shift_lesions(mask: np.ndarray, fraction: float, lesion_labels, fill: int) -> tuple[np.ndarray, list]:
    """Move all lesion voxels together toward the centre of the labelled anatomy; they stay inside it, and the
    space they leave becomes ``fill`` (the anatomy label)."""
    lesion = np.isin(mask, lesion_labels)
    anatomy = mask > 0
    if not lesion.any() or fraction <= 0:
        return mask, [0, 0, 0]
    delta = np.round(fraction * (np.argwhere(anatomy).mean(0) - np.argwhere(lesion).mean(0))).astype(int)
    if not delta.any():
        return mask, [0, 0, 0]
    out = np.where(lesion, fill, mask).astype(np.int16)
    src = np.argwhere(lesion)
    dst = src + delta
    inside = np.all((dst >= 0) & (dst < np.array(mask.shape)), axis=1)
    src, dst = src[inside], dst[inside]
    keep = anatomy[tuple(dst.T)]
    out[tuple(dst[keep].T)] = mask[tuple(src[keep].T)]
    return out, delta.tolist()
