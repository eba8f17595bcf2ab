"""The tumour vector: size, shape and position of a label map's lesions, one function for training, requests and
checking what came out.

Attributes (all from the lesion labels of the label set, in RAS model space, so x runs left -> right, y posterior ->
anterior, z inferior -> superior):

- ``volume_ml``: lesion volume in millilitres;
- ``surface_mm2``: lesion surface area (MONAI's ``get_mask_edges`` with spacing: each boundary voxel's area by the
  marching-cube neighbourhood table; a digital sphere of radius 15 voxels reads about 7% above 4 pi r^2);
- ``sphericity``: pi^(1/3) (6 V)^(2/3) / A, 1 for a sphere (about 0.93 with this area estimate), lower for
  elongated or lobulated shapes;
- ``centre_x/y/z``: the centre of the lesions' bounding box, relative to the anatomy's bounding box (0 = its left /
  posterior / inferior end, 1 = the other end);
- ``extent_x/y/z``: the lesions' bounding-box size relative to the anatomy's;
- ``count``: connected lesion components (26-connectivity) of at least ``min_voxels`` voxels.

A case without lesion (healthy) has volume 0 and every other attribute 0; ``sub_region_fractions`` (share of each
lesion label in the lesion volume) is reported, not conditioned on.
"""

from __future__ import annotations

import json
import os

import numpy as np
from monai.metrics.utils import get_mask_edges
from scipy import ndimage

from ..errors import Gem3dInputError

SIZE = ("volume_ml", "surface_mm2", "sphericity")
CENTRE = ("centre_x", "centre_y", "centre_z")
EXTENT = ("extent_x", "extent_y", "extent_z")
ATTRIBUTES = SIZE + CENTRE + EXTENT + ("count",)
CONDITION_WIDTH = len(ATTRIBUTES) + 2  # the encoded vector: standardised attributes, "healthy" and "given" flags

# What a request may ask for: (low, high) of each attribute; None = no bound. Relative positions and extents are
# fractions of the anatomy's bounding box; sphericity cannot exceed 1.
VALID_RANGE = {
    "volume_ml": (0.0, None),
    "surface_mm2": (0.0, None),
    "sphericity": (0.0, 1.0),
    "centre_x": (0.0, 1.0),
    "centre_y": (0.0, 1.0),
    "centre_z": (0.0, 1.0),
    "extent_x": (0.0, 1.0),
    "extent_y": (0.0, 1.0),
    "extent_z": (0.0, 1.0),
    "count": (0.0, None),
}


def _bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argwhere(mask)
    return idx.min(0).astype(float), idx.max(0).astype(float) + 1.0


def tumour_attributes(label: np.ndarray, spacing, lesion_labels, min_voxels: int = 5) -> dict:
    """The tumour vector of one (X, Y, Z) label map with voxel ``spacing`` (mm); see the module docstring."""
    label = np.asarray(label)
    if label.ndim != 3:
        raise Gem3dInputError(f"tumour attributes need a 3D label map, got shape {label.shape}")
    spacing = np.asarray(spacing, dtype=float)
    lesion = np.isin(label, list(lesion_labels))
    anatomy = label > 0
    out = {k: 0.0 for k in ATTRIBUTES}
    out["sub_region_fractions"] = {int(v): 0.0 for v in lesion_labels}
    if not lesion.any():
        return out
    volume_mm3 = float(lesion.sum()) * float(np.prod(spacing))
    area = float(np.sum(get_mask_edges(lesion, lesion, spacing=tuple(spacing))[2]))
    lo, hi = _bbox(lesion)
    alo, ahi = _bbox(anatomy)
    extent = np.maximum(ahi - alo, 1.0)
    components, _ = ndimage.label(lesion, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(components.ravel())[1:]
    out.update(
        volume_ml=volume_mm3 / 1000.0,
        surface_mm2=area,
        sphericity=float(np.pi ** (1 / 3) * (6 * volume_mm3) ** (2 / 3) / max(area, 1e-6)),
        count=float(max(int((sizes >= min_voxels).sum()), 1)),
    )
    for axis, (c, e) in enumerate(zip(CENTRE, EXTENT)):
        out[c] = float(((lo[axis] + hi[axis]) / 2 - alo[axis]) / extent[axis])
        out[e] = float((hi[axis] - lo[axis]) / extent[axis])
    n_lesion = float(lesion.sum())
    out["sub_region_fractions"] = {int(v): float((label == v).sum() / n_lesion) for v in lesion_labels}
    return out


def mean_anatomy_box(labels) -> np.ndarray:
    """(2, 3): the mean bounding box of the anatomy (label > 0) over label maps, as fractions of the field of view
    (low corner, high corner): where the joint model's spatial prior places relative tumour positions."""
    boxes = []
    for label in labels:
        label = np.asarray(label)
        if (label > 0).any():
            lo, hi = _bbox(label > 0)
            boxes.append(np.stack([lo, hi]) / np.asarray(label.shape, dtype=float))
    if not boxes:
        raise Gem3dInputError("no label map with anatomy to take the anatomy box from")
    return np.mean(boxes, axis=0)


def as_vector(attributes: dict) -> np.ndarray:
    """The attributes in ``ATTRIBUTES`` order."""
    return np.array([float(attributes[k]) for k in ATTRIBUTES], dtype=np.float64)


def check_request(request: dict, where: str = "request") -> dict:
    """Validate requested attributes (any subset of ``ATTRIBUTES``; None = unspecified) against ``VALID_RANGE``,
    before anything is generated. Returns the specified ones as floats."""
    unknown = sorted(set(request) - set(ATTRIBUTES))
    if unknown:
        raise Gem3dInputError(f"{where}: unknown tumour attribute(s) {unknown}; known: {list(ATTRIBUTES)}")
    out = {}
    for key, value in request.items():
        if value is None:
            continue
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise Gem3dInputError(f"{where}: tumour attribute {key}={value!r} is not a number") from None
        lo, hi = VALID_RANGE[key]
        if not np.isfinite(v) or v < lo or (hi is not None and v > hi):
            bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise Gem3dInputError(f"{where}: tumour attribute {key}={value!r} is out of range; valid: {bound}")
        out[key] = v
    for c, e in zip(CENTRE, EXTENT):
        if c in out and e in out and (out[c] - out[e] / 2 < -1e-6 or out[c] + out[e] / 2 > 1 + 1e-6):
            raise Gem3dInputError(
                f"{where}: a lesion box centred at {c}={out[c]} with {e}={out[e]} reaches outside the anatomy's box"
            )
    if out.get("volume_ml", None) == 0.0 and any(out.get(k, 0.0) > 0 for k in ATTRIBUTES if k != "volume_ml"):
        raise Gem3dInputError(f"{where}: volume_ml=0 asks for a healthy case; it cannot have other tumour attributes")
    return out


class AttributeTable:
    """The training set's tumour vectors: the conditioning normalisation and the distribution that unspecified
    attributes are drawn from.

    Unspecified attributes of a request come from a real training case, not from independent uniforms (which give
    impossible tumours): among the training cases with the request's tumour status, the one nearest the requested
    attributes (in standardised units) is picked at random from the ``k`` nearest, its unrequested size attributes
    are rescaled to the requested volume (area by V^(2/3), extents by V^(1/3)), and the requested values replace its
    own.
    """

    def __init__(self, rows: list[dict]):
        if not rows:
            raise Gem3dInputError("no training cases to take tumour attributes from")
        self.rows = [{k: float(r[k]) for k in ATTRIBUTES} for r in rows]
        values = np.stack([as_vector(r) for r in self.rows])
        sick = values[values[:, 0] > 0]
        ref = sick if len(sick) >= 2 else values
        self.mean = self._features(ref).mean(0)
        self.std = self._features(ref).std(0) + 1e-3

    def as_dict(self) -> dict:
        return {"attributes": list(ATTRIBUTES), "rows": self.rows}

    @classmethod
    def from_dict(cls, d: dict) -> "AttributeTable":
        if list(d.get("attributes", [])) != list(ATTRIBUTES):
            raise Gem3dInputError(f"attribute table lists {d.get('attributes')}, this version needs {ATTRIBUTES}")
        return cls(d["rows"])

    @staticmethod
    def _features(values: np.ndarray) -> np.ndarray:
        # Volume and area enter as cube / square roots: linear in the tumour's radius, which the network sees best.
        f = values.astype(np.float64).copy()
        f[:, 0] = np.cbrt(f[:, 0])
        f[:, 1] = np.sqrt(f[:, 1])
        return f

    def encode(self, attributes: dict) -> np.ndarray:
        """Network input: standardised features plus a last entry 1 ("attributes given"); healthy cases keep their
        zeros unstandardised apart from the flag so that 'no tumour' is one fixed point."""
        v = as_vector(attributes)[None]
        f = ((self._features(v) - self.mean) / self.std)[0] if v[0, 0] > 0 else np.zeros(len(ATTRIBUTES))
        healthy = 1.0 if v[0, 0] <= 0 else 0.0
        return np.concatenate([f, [healthy, 1.0]]).astype(np.float32)

    @classmethod
    def read(cls, path: str) -> "AttributeTable":
        """The table written beside the joint model's weights by its training."""
        if not os.path.isfile(path):
            raise Gem3dInputError(f"tumour attribute table not found: {path} (written by the joint model's training)")
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def draw(self, request: dict, rng: np.random.Generator, k: int = 3) -> dict:
        """A complete attribute dict for ``request`` (validated, any subset; see the class docstring)."""
        request = check_request(request)
        healthy = request.get("volume_ml", None) == 0.0
        pool = [r for r in self.rows if (r["volume_ml"] == 0) == healthy]
        if not pool:
            raise Gem3dInputError(f"the training set has no {'healthy' if healthy else 'tumour'} case to draw from")
        if healthy:
            return dict(pool[int(rng.integers(len(pool)))])
        keys = [a for a in request]
        if keys:
            idx = [ATTRIBUTES.index(a) for a in keys]
            feats = (self._features(np.stack([as_vector(r) for r in pool])) - self.mean) / self.std
            want = (self._features(as_vector({**pool[0], **request})[None]) - self.mean) / self.std
            dist = np.linalg.norm(feats[:, idx] - want[0, idx], axis=1)
            nearest = np.argsort(dist)[: max(1, min(k, len(pool)))]
            base = dict(pool[int(rng.choice(nearest))])
        else:
            base = dict(pool[int(rng.integers(len(pool)))])
        if "volume_ml" in request and base["volume_ml"] > 0:
            ratio = request["volume_ml"] / base["volume_ml"]
            if "surface_mm2" not in request:
                base["surface_mm2"] *= ratio ** (2 / 3)
            for e in EXTENT:
                if e not in request:
                    base[e] = min(base[e] * ratio ** (1 / 3), 1.0)
        base.update(request)
        for c, e in zip(CENTRE, EXTENT):  # keep the box inside the anatomy after rescaling
            if c in request and e not in request:
                base[e] = min(base[e], 2 * min(base[c], 1 - base[c]))
            elif c not in request:
                base[c] = float(np.clip(base[c], base[e] / 2, 1 - base[e] / 2))
        return base


def lesions_outside(label: np.ndarray, lesion_labels, anatomy_labels, min_voxels: int = 5) -> int:
    """How many lesion components (26-connected, at least ``min_voxels``) lie mostly outside the anatomy: fewer
    than half of their voxels inside the anatomy's hull (its labels closed by 3 voxels and filled, so a tumour that
    the anatomy surrounds or that reaches the surface counts as inside). 0 for a label set without anatomy labels."""
    label = np.asarray(label)
    if not len(anatomy_labels):
        return 0
    lesion = np.isin(label, list(lesion_labels))
    anatomy = np.isin(label, list(anatomy_labels))
    hull = ndimage.binary_fill_holes(ndimage.binary_closing(anatomy, np.ones((3, 3, 3)), iterations=3))
    components, n = ndimage.label(lesion, structure=np.ones((3, 3, 3)))
    if n == 0:
        return 0
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(lesion, components, index)
    inside = ndimage.mean(hull, components, index)  # fraction of each component's voxels in the hull
    return int(np.sum((sizes >= min_voxels) & (inside < 0.5)))
