"""NIfTI reading and atomic writing that keeps geometry, plus orientation to and from RAS.

gem3d computes in RAS voxel order (axial slices along the last axis) and writes results back in the input's own
orientation and affine, so a result overlays its mask in any viewer.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt

from .errors import Gem3dInputError


def load_nifti(path: str, what: str = "volume", rank: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Load a NIfTI file as (array, affine); a clear error names the file when it is missing or unreadable."""
    if not os.path.isfile(path):
        raise Gem3dInputError(f"{what} file not found: {path}")
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise Gem3dInputError(f"{what} file {path} is not a readable NIfTI image: {exc}") from exc
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if rank is not None and data.ndim != rank:
        raise Gem3dInputError(f"{what} file {path} has rank {data.ndim} (shape {data.shape}); expected rank {rank}")
    return data, np.asarray(img.affine, dtype=np.float64)


def to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder the voxel axes of ``data`` to RAS (no resampling); returns the data and its RAS affine."""
    src = ornt.io_orientation(affine)
    ras = ornt.axcodes2ornt(("R", "A", "S"))
    xform = ornt.ornt_transform(src, ras)
    out = ornt.apply_orientation(data, xform)
    new_affine = affine @ ornt.inv_ornt_aff(xform, data.shape[:3])
    return np.ascontiguousarray(out), new_affine


def from_ras(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_ras`: reorder RAS-ordered voxels back to the orientation of ``affine``."""
    src = ornt.io_orientation(affine)
    ras = ornt.axcodes2ornt(("R", "A", "S"))
    return np.ascontiguousarray(ornt.apply_orientation(data, ornt.ornt_transform(ras, src)))


def _atomic_target(path: str, overwrite: bool) -> str:
    if os.path.exists(path) and not overwrite:
        raise Gem3dInputError(f"output {path} already exists; pass overwrite=True to replace it")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise Gem3dInputError(f"cannot create output folder {folder}: {exc}") from exc
    if not os.access(folder, os.W_OK):
        raise Gem3dInputError(f"output folder {folder} is not writable")
    return folder


def _atomic_write(path: str, overwrite: bool, suffix: str, write) -> str:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place (or remove it)."""
    folder = _atomic_target(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def save_nifti(data: np.ndarray, affine: np.ndarray, path: str, overwrite: bool = False, dtype=None) -> str:
    """Write ``data`` with ``affine`` to ``path`` through a temporary file and a rename (never a partial file)."""
    arr = np.asarray(data if dtype is None else data.astype(dtype))
    img = nib.Nifti1Image(arr, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    suffix = ".nii.gz" if path.endswith(".nii.gz") else ".nii"
    return _atomic_write(path, overwrite, suffix, lambda tmp: nib.save(img, tmp))


def save_json(obj: Any, path: str, overwrite: bool = False) -> str:
    """Write JSON atomically (temporary file, then rename)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")

    return _atomic_write(path, overwrite, ".json", write)


def save_torch(obj: Any, path: str, overwrite: bool = False) -> str:
    """``torch.save`` of weights or a cache, written atomically (a reader never sees half a file)."""
    import torch

    return _atomic_write(path, overwrite, ".pt", lambda tmp: torch.save(obj, tmp))


def save_text(text: str, path: str, overwrite: bool = False) -> str:
    """Write a text file (a Markdown report) atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    return _atomic_write(path, overwrite, ".txt", write)


def new_figure(nrows: int = 1, ncols: int = 1, figsize=(6.0, 4.0), **kwargs):
    """A figure and its axes drawn without pyplot: no matplotlib backend is chosen or switched, so a host process
    (the MONAI Label server, a notebook) keeps its own; nothing needs closing."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig, path: str, overwrite: bool = False, dpi: int = 100) -> str:
    """Save a matplotlib figure atomically as PNG."""
    return _atomic_write(
        path, overwrite, ".png", lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    )


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
