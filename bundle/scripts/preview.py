"""Tri-planar (axial, coronal, sagittal) PNG previews of a volume with its mask outline."""

from __future__ import annotations

import numpy as np

from .io import new_figure, save_figure

_LABEL_COLOURS = ["#4da6ff", "#ffd11a", "#ff4d4d", "#66ff66", "#ff66ff", "#66ffff", "#ff9933", "#b3b3ff"]


def _colour(label: int) -> str:
    return _LABEL_COLOURS[(int(label) - 1) % len(_LABEL_COLOURS)]


def _planes(vol: np.ndarray, centre: tuple[int, int, int]) -> list[tuple[str, np.ndarray]]:
    x, y, z = centre
    # RAS voxel order: show each plane with anterior / superior up, as radiologists expect.
    return [
        ("axial", np.rot90(vol[:, :, z])),
        ("coronal", np.rot90(vol[:, y, :])),
        ("sagittal", np.rot90(vol[x, :, :])),
    ]


def _centre(mask: np.ndarray | None, shape, focus=None) -> tuple[int, int, int]:
    """Centre on the ``focus`` labels (the label set's lesions; default: any foreground label) if the mask has
    them, else on the volume centre."""
    if mask is not None:
        mask = np.asarray(mask)
        idx = np.argwhere(np.isin(mask, focus) if focus else mask > 0)
        if len(idx):
            return tuple(int(v) for v in np.round(idx.mean(0)))
    return tuple(s // 2 for s in shape)


def triplanar_figure(image, mask=None, title: str = "", centre=None, spacing=(1.0, 1.0, 1.0), focus=None, window=None):
    """A 1x3 figure of the axial, coronal and sagittal planes through ``centre`` (default: the ``focus`` labels'
    centre) with mask contours, grey levels over ``window`` (default: the 0.5-99.5 percentiles; CT: a HU window).

    ``spacing`` (mm per voxel, RAS order) sets each panel's pixel aspect so anisotropic volumes look right.
    """
    sx, sy, sz = (float(v) for v in spacing)
    aspects = [sy / sx, sz / sx, sz / sy]  # imshow aspect = pixel height / width; rot90 puts axis 2 of a plane on rows
    image = np.asarray(image, dtype=np.float32)
    centre = centre or _centre(mask, image.shape, focus)
    lo, hi = window or (np.percentile(image, [0.5, 99.5]) if image.size else (0.0, 1.0))
    fig, axes = new_figure(1, 3, figsize=(9, 3.4))
    img_planes = _planes(image, centre)
    mask_planes = [p for _, p in _planes(np.asarray(mask), centre)] if mask is not None else [None] * 3
    for ax, (name, plane), mplane, aspect in zip(axes, img_planes, mask_planes, aspects):
        ax.imshow(plane, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest", aspect=aspect)
        if mplane is not None:
            for label in np.unique(mplane[mplane > 0]):
                ax.contour(mplane == label, levels=[0.5], colors=_colour(label), linewidths=0.7)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def save_triplanar(
    path: str, image, mask=None, title: str = "", overwrite=False, affine=None, focus=None, window=None
) -> str:
    """Write a tri-planar preview PNG (atomically) and return its path; ``affine`` gives the voxel spacing."""
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0) if affine is not None else (1.0, 1.0, 1.0)
    fig = triplanar_figure(image, mask, title, spacing=spacing, focus=focus, window=window)
    return save_figure(fig, path, overwrite=overwrite)
