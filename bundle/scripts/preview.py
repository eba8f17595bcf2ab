"""Tri-planar (axial, coronal, sagittal) PNG previews of a volume with its mask outline."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # previews are written by jobs and servers without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import save_figure  # noqa: E402

_LABEL_COLOURS = {1: "#4da6ff", 2: "#ffd11a", 3: "#ff4d4d", 4: "#66ff66"}


def _planes(vol: np.ndarray, centre: tuple[int, int, int]) -> list[tuple[str, np.ndarray]]:
    x, y, z = centre
    # RAS voxel order: show each plane with anterior / superior up, as radiologists expect.
    return [
        ("axial", np.rot90(vol[:, :, z])),
        ("coronal", np.rot90(vol[:, y, :])),
        ("sagittal", np.rot90(vol[x, :, :])),
    ]


def _centre(mask: np.ndarray | None, shape) -> tuple[int, int, int]:
    """Centre on the tumour (labels >= 2) if there is one, else on the volume centre."""
    if mask is not None:
        idx = np.argwhere(mask >= 2)
        if len(idx):
            return tuple(int(v) for v in np.round(idx.mean(0)))
    return tuple(s // 2 for s in shape)


def triplanar_figure(image, mask=None, title: str = "", centre=None, spacing=(1.0, 1.0, 1.0)):
    """A 1x3 figure of the axial, coronal and sagittal planes through ``centre`` with mask contours.

    ``spacing`` (mm per voxel, RAS order) sets each panel's pixel aspect so anisotropic volumes look right.
    """
    sx, sy, sz = (float(v) for v in spacing)
    aspects = [sy / sx, sz / sx, sz / sy]  # imshow aspect = pixel height / width; rot90 puts axis 2 of a plane on rows
    image = np.asarray(image, dtype=np.float32)
    centre = centre or _centre(mask, image.shape)
    lo, hi = np.percentile(image, [0.5, 99.5]) if image.size else (0.0, 1.0)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    img_planes = _planes(image, centre)
    mask_planes = [p for _, p in _planes(np.asarray(mask), centre)] if mask is not None else [None] * 3
    for ax, (name, plane), mplane, aspect in zip(axes, img_planes, mask_planes, aspects):
        ax.imshow(plane, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest", aspect=aspect)
        if mplane is not None:
            for label, colour in _LABEL_COLOURS.items():
                if (mplane == label).any():
                    ax.contour(mplane == label, levels=[0.5], colors=colour, linewidths=0.7)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def save_triplanar(path: str, image, mask=None, title: str = "", overwrite=False, affine=None):
    """Write a tri-planar preview PNG (atomically) and return its path; ``affine`` gives the voxel spacing."""
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0) if affine is not None else (1.0, 1.0, 1.0)
    fig = triplanar_figure(image, mask, title, spacing=spacing)
    try:
        return save_figure(fig, path, overwrite=overwrite)
    finally:
        plt.close(fig)
