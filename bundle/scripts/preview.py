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


def _draw_row(axes, image, mask, centre, aspects, window, label: str = "") -> None:
    lo, hi = window or (np.percentile(image, [0.5, 99.5]) if image.size else (0.0, 1.0))
    mask_planes = [p for _, p in _planes(np.asarray(mask), centre)] if mask is not None else [None] * 3
    for ax, (name, plane), mplane, aspect in zip(axes, _planes(image, centre), mask_planes, aspects):
        ax.imshow(plane, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest", aspect=aspect)
        if mplane is not None:
            for value in np.unique(mplane[mplane > 0]):
                ax.contour(mplane == value, levels=[0.5], colors=_colour(value), linewidths=0.7)
        ax.set_title(f"{label} {name}".strip(), fontsize=9)
        ax.axis("off")


def _aspects(spacing) -> list:
    sx, sy, sz = (float(v) for v in spacing)
    return [sy / sx, sz / sx, sz / sy]  # imshow aspect = pixel height / width; rot90 puts axis 2 of a plane on rows


def triplanar_figure(image, mask=None, title: str = "", centre=None, spacing=(1.0, 1.0, 1.0), focus=None, window=None):
    """A 1x3 figure of the axial, coronal and sagittal planes through ``centre`` (default: the ``focus`` labels'
    centre) with mask contours, grey levels over ``window`` (default: the 0.5-99.5 percentiles; CT: a HU window).

    ``spacing`` (mm per voxel, RAS order) sets each panel's pixel aspect so anisotropic volumes look right.
    """
    image = np.asarray(image, dtype=np.float32)
    centre = centre or _centre(mask, image.shape, focus)
    fig, axes = new_figure(1, 3, figsize=(9, 3.4))
    _draw_row(axes, image, mask, centre, _aspects(spacing), window)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def zoom_box(shape, centre, zoom: float) -> tuple[tuple[slice, ...], tuple[int, int, int]]:
    """The box of 1/``zoom`` of every axis around ``centre`` (moved inside the volume) and the centre within it."""
    box, inner = [], []
    for size, c in zip(shape, centre):
        width = max(1, int(round(size / float(zoom))))
        start = int(np.clip(c - width // 2, 0, size - width))
        box.append(slice(start, start + width))
        inner.append(int(c) - start)
    return tuple(box), tuple(inner)


def save_comparison(
    path: str, rows: list, title: str = "", affine=None, focus=None, overwrite=False, zoom: float = 1.0, window=None
) -> str:
    """One row of axial, coronal and sagittal planes per ``(label, image, mask)`` of ``rows``, all through the same
    point (the first mask's ``focus`` labels): two generators' images for one mask, side by side. ``zoom`` > 1 shows
    1/zoom of every axis around that point, where slice-to-slice banding is seen voxel by voxel. ``window`` (lo, hi)
    gives every row the same grey levels (default: each row its own percentiles), so brightness compares too."""
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0) if affine is not None else (1.0, 1.0, 1.0)
    first = np.asarray(rows[0][1])
    centre = _centre(rows[0][2], first.shape, focus)
    box, centre = zoom_box(first.shape, centre, zoom)
    fig, axes = new_figure(len(rows), 3, figsize=(9, 3.2 * len(rows)), squeeze=False)
    for ax_row, (label, image, mask) in zip(axes, rows):
        mask = np.asarray(mask)[box] if mask is not None else None
        _draw_row(ax_row, np.asarray(image, np.float32)[box], mask, centre, _aspects(spacing), window, label)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, overwrite=overwrite)


def save_triplanar(
    path: str, image, mask=None, title: str = "", overwrite=False, affine=None, focus=None, window=None
) -> str:
    """Write a tri-planar preview PNG (atomically) and return its path; ``affine`` gives the voxel spacing."""
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0) if affine is not None else (1.0, 1.0, 1.0)
    fig = triplanar_figure(image, mask, title, spacing=spacing, focus=focus, window=window)
    return save_figure(fig, path, overwrite=overwrite)
