"""Writing one synthesis result: image and mask NIfTI on the mask's grid, a tri-planar preview and the record."""

from __future__ import annotations

import os

import numpy as np

from ..errors import Gem3dInputError
from ..io import save_json, save_nifti
from ..preview import save_triplanar


def result_paths(output_dir: str, name: str) -> dict:
    return {
        "image": os.path.join(output_dir, "images", f"{name}.nii.gz"),
        "label": os.path.join(output_dir, "labels", f"{name}.nii.gz"),
        "preview": os.path.join(output_dir, "previews", f"{name}.png"),
        "record": os.path.join(output_dir, "records", f"{name}.json"),
    }


def write_result(result: dict, output_dir: str, name: str, overwrite: bool = False) -> dict:
    """Write a ``Synthesizer.synthesize`` result under ``output_dir`` (atomically, file by file); refuses to
    overwrite anything unless asked. Returns the paths written."""
    paths = result_paths(output_dir, name)
    if not overwrite:
        existing = [p for p in paths.values() if os.path.exists(p)]
        if existing:
            raise Gem3dInputError(f"outputs already exist ({existing[0]}); set overwrite to replace them")
    save_nifti(result["image"], result["affine"], paths["image"], overwrite, np.float32)
    save_nifti(result["mask"], result["affine"], paths["label"], overwrite, np.int16)
    save_triplanar(
        paths["preview"],
        result["image"],
        result["mask"],
        title=name,
        overwrite=overwrite,
        affine=result["affine"],
        focus=result.get("focus"),
    )
    save_json({**result["record"], "outputs": paths}, paths["record"], overwrite)
    return paths
