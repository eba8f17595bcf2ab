"""New labelled cases on demand: image + mask pairs from the joint model, for requested tumour attributes.

Each case: the request completed from the training distribution (``AttributeTable.draw``), one latent stack
sampled under its encoded vector, decoded into image and mask, written as NIfTI on the model grid (RAS, the model
spacing, the field of view centred on the origin) with a preview, and recorded with the requested, the conditioned
and the achieved attributes. The cases end in an MSD-style datalist with the model's label set, so the other jobs
take them as they take a real dataset.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch

from ..data.datalist import read_datalist
from ..data.tumour_attributes import ATTRIBUTES, CENTRE, EXTENT, check_request, lesions_outside, tumour_attributes
from ..errors import Gem3dInputError
from ..io import load_nifti, save_json
from ..precision import resolve_precision
from ..preview import save_comparison
from .enhance import run_datalist
from .results import write_result

logger = logging.getLogger(__name__)


def tumour_request(
    volume_ml=None, sphericity=None, surface_mm2=None, centre=None, extent=None, count=None, healthy=False
) -> dict:
    """The request of the job's parameters (``centre`` / ``extent``: three numbers, x y z), validated before
    anything is generated; errors name the parameter and the valid range."""
    request = {"volume_ml": volume_ml, "sphericity": sphericity, "surface_mm2": surface_mm2, "count": count}
    for name, keys, value in (("centre", CENTRE, centre), ("extent", EXTENT, extent)):
        if value is None:
            continue
        if isinstance(value, str) or np.ndim(value) != 1 or len(value) != 3:
            raise Gem3dInputError(f"{name} must be three numbers (x, y, z) in [0, 1], got {value!r}")
        request.update(zip(keys, value))
    if healthy:
        if any(v is not None for v in request.values()):
            raise Gem3dInputError("healthy=True asks for a case without tumour; it cannot take tumour attributes")
        request["volume_ml"] = 0.0
    return check_request({k: v for k, v in request.items() if v is not None}, "tumour request")


def request_error(request: dict, achieved: dict) -> float:
    """How far ``achieved`` attributes are from the requested ones (0 for an empty request): relative error of
    volume, area and count (log ratio), absolute error of sphericity, centre and extent; a healthy request scores
    the lesion volume it got."""
    if request.get("volume_ml", None) == 0.0:
        return float(achieved["volume_ml"])
    error = 0.0
    for key, want in request.items():
        got = achieved[key]
        if key in ("volume_ml", "surface_mm2", "count"):
            error += abs(np.log((got + 1e-3) / (want + 1e-3)))
        else:
            error += abs(got - want)
    return float(error)


def candidate_rank(request: dict, achieved: dict, outside: int) -> tuple[int, float]:
    """How a best-of-N candidate ranks (lower is better): any lesion outside the anatomy loses to none, whatever the
    attributes (a tumour outside the head is an impossible case), then ``request_error``."""
    return int(outside > 0), request_error(request, achieved)


def case_affine(grid, depth: int) -> np.ndarray:
    """The written cases' affine: RAS axes at the model spacing, the field of view centred on the origin."""
    shape = np.array([grid.size, grid.size, depth], dtype=float)
    affine = np.diag([*grid.spacing, 1.0])
    affine[:3, 3] = -0.5 * (shape - 1) * np.asarray(grid.spacing)
    return affine


class CaseGenerator:
    def __init__(
        self,
        model,
        grid,
        labels,
        steps: int = 25,
        eta: float = 0.0,
        guidance_scale: float = 2.0,
        precision: str = "auto",
        progress: bool = True,
        zero_background: bool | None = None,
        best_of: int = 1,
    ):
        if int(steps) < 1:
            raise Gem3dInputError(f"steps must be >= 1, got {steps}")
        if float(guidance_scale) < 0:
            raise Gem3dInputError(f"guidance_scale must be >= 0, got {guidance_scale}")
        self.model, self.grid, self.labels = model, grid, labels
        self.steps, self.eta, self.guidance = int(steps), float(eta), float(guidance_scale)
        self.precision, self.precision_reason = resolve_precision(precision, model.device)
        if int(best_of) < 1:
            raise Gem3dInputError(f"best_of must be >= 1, got {best_of}")
        self.best_of = int(best_of)
        self.progress = bool(progress)
        self.zero_background = labels.covers_anatomy if zero_background is None else bool(zero_background)

    @property
    def depth(self) -> int:
        lo, hi = self.grid.slices
        if lo != hi:
            raise Gem3dInputError(f"the joint model needs one training depth; the model grid records {lo}-{hi} slices")
        return int(lo)

    def generate(self, request: dict, seed: int) -> dict:
        """One case for a validated ``request``: ``image``, ``mask``, ``affine``, ``record`` (``write_result``'s
        input)."""
        start = time.time()
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(int(seed))
        table = self.model.table
        drawn = table.draw(request, rng)
        shape = self.model.latent_shape(self.grid.size, self.depth)
        vector = table.encode(drawn)
        best = None
        for k in range(self.best_of):  # candidates differ by their starting noise (the generator runs on)
            latent = self.model.sample(
                vector, shape, generator, self.steps, self.eta, self.guidance, self.precision, self.progress
            )
            image, mask = self.model.decode(latent)
            achieved = tumour_attributes(mask, self.grid.spacing, self.labels.lesion_labels)
            outside = lesions_outside(mask, self.labels.lesion_labels, self.labels.anatomy_labels)
            rank = candidate_rank(request, achieved, outside)
            if best is None or rank < best[0]:
                best = (rank, k, image, mask, achieved, outside)
            if rank == (0, 0.0):  # nothing requested (or a healthy request met), all inside: none can be better
                break
        (_, error), chosen, image, mask, achieved, outside = best
        image = np.clip(image, 0.0, None)
        if self.zero_background:
            image[mask == 0] = 0.0
        record = {
            "backend": "joint",
            "seed": int(seed),
            "requested": request,
            "conditioned_on": {k: drawn[k] for k in ATTRIBUTES},
            "achieved": achieved,
            "candidates": {
                "sampled": k + 1,
                "of": self.best_of,
                "chosen": chosen,
                "request_error": round(float(error), 4),
            },
            "lesions_outside_anatomy": outside,
            "settings": {
                "steps": self.steps,
                "eta": self.eta,
                "guidance_scale": self.guidance,
                "precision": self.precision,
                "precision_reason": self.precision_reason,
            },
            "grid": self.grid.as_dict(),
            "seconds": round(time.time() - start, 2),
        }
        affine = case_affine(self.grid, mask.shape[2])
        return {"image": image, "mask": mask, "affine": affine, "record": record, "focus": self.labels.lesion_labels}


def generate_cases(
    generator: CaseGenerator,
    request: dict,
    num_cases: int,
    output_dir: str,
    seed: int = 0,
    overwrite: bool = False,
    section: str = "training",
    prefix: str = "case",
) -> str:
    """``num_cases`` cases for one request under ``output_dir`` (images/, labels/, previews/, records/) and their
    datalist (``datalist.json``, cases in ``section``); returns the datalist path. Case i uses seed ``seed`` + i."""
    if int(num_cases) < 1:
        raise Gem3dInputError(f"num_cases must be >= 1, got {num_cases}")
    datalist_path = os.path.join(output_dir, "datalist.json")
    if os.path.exists(datalist_path) and not overwrite:
        raise Gem3dInputError(f"outputs already exist ({datalist_path}); set overwrite to replace them")
    os.makedirs(output_dir, exist_ok=True)
    if not os.access(output_dir, os.W_OK):
        raise Gem3dInputError(f"output folder {output_dir} is not writable")
    entries = []
    for i in range(int(num_cases)):
        name = f"{prefix}_{i:03d}_s{seed + i}"
        result = generator.generate(request, seed + i)
        write_result(result, output_dir, name, overwrite)
        rec = result["record"]
        logger.info(
            f"{name}: {rec['achieved']['volume_ml']:.1f} ml (conditioned on {rec['conditioned_on']['volume_ml']:.1f}),"
            f" {rec['seconds']} s"
        )
        entries.append({"image": f"images/{name}.nii.gz", "label": f"labels/{name}.nii.gz", "id": name})
    content = {
        "name": "gem3d-joint-cases",
        "description": "image + mask pairs generated by the joint model from tumour attributes",
        "request": request,
        **generator.labels.as_dict(),
        section: entries,
    }
    return save_json(content, datalist_path, overwrite=True)


def hand_off_to_gem3d(synth, datalist: str, output_dir: str, seed: int = 0, overwrite: bool = False) -> list:
    """GEM-3D's image for every generated mask (under ``output_dir``) and a side-by-side preview of the joint
    model's image and GEM-3D's for the same mask (``output_dir/compare/``)."""
    done = run_datalist(synth, datalist, "training", output_dir, 1, seed, overwrite)
    items = {it["id"]: it for it in read_datalist(datalist, ("training",))["training"]}
    for job in done:
        source = items[job["name"].split("_gem3d_")[0]]
        joint, affine = load_nifti(source["image"])
        mask = load_nifti(source["label"])[0]
        gem3d = load_nifti(job["image"])[0]
        save_comparison(
            os.path.join(output_dir, "compare", f"{source['id']}.png"),
            [("joint", joint, mask), ("GEM-3D", gem3d, mask)],
            title=f"{source['id']}: the joint model's image and GEM-3D's for the same generated mask",
            affine=affine,
            focus=synth.cfg["labels"].lesion_labels,
            overwrite=overwrite,
        )
    return done
