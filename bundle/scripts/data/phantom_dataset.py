"""Writing a generated dataset: NIfTI images and labels, an MSD-style datalist with its label set, previews and
statistics. Shared by the brain demo (``demo_phantom``) and the CT phantoms (``ct_phantom``)."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Callable

import numpy as np
from tqdm import tqdm

from ..errors import Gem3dInputError
from ..io import save_json, save_nifti
from ..preview import save_triplanar
from .label_set import LabelSet

logger = logging.getLogger(__name__)


def _reusable(datalist_path: str, spec: dict, out_dir: str, labels: LabelSet) -> bool:
    """True when ``out_dir`` already holds this exact dataset; an error when it holds another one. A datalist
    written before it carried the full label set gets it (the files are the same)."""
    if not os.path.isfile(datalist_path):
        return False
    with open(datalist_path) as f:
        existing = json.load(f)
    items = existing.get("training", []) + existing.get("test", [])
    if existing.get("spec") == spec and all(
        os.path.isfile(os.path.join(out_dir, it[k]))
        for it in items
        for k in ("image", "label", "coordinates")
        if k in it
    ):
        if existing.get("labels") is None or LabelSet.from_dict(existing, datalist_path) != labels:
            save_json({**existing, **labels.as_dict()}, datalist_path, overwrite=True)
        logger.info(f"dataset already present at {out_dir} (same spec); reusing it")
        return True
    raise Gem3dInputError(
        f"{out_dir} already holds a dataset with another spec ({existing.get('spec')}); "
        "choose another dataset_dir or pass overwrite=True"
    )


def write_dataset(
    out_dir: str,
    make_patient: Callable[[int], dict],
    spec: dict,
    labels: LabelSet,
    header: dict,
    prefix: str,
    previews: int = 4,
    overwrite: bool = False,
    preview_window=None,
) -> str:
    """Generate ``spec["num_train"] + spec["num_test"]`` patients with ``make_patient(index)`` (a dict with
    ``image``, ``label``, ``affine``, ``params``) and write them under ``out_dir``; return the datalist path.

    ``header`` (name, description, modality) opens the datalist; the label set follows it. An existing dataset with
    the same ``spec`` is reused; a folder with another dataset is never overwritten unless ``overwrite`` is set.
    ``preview_window`` fixes the previews' grey levels (CT: a HU window)."""
    start = time.time()
    datalist_path = os.path.join(out_dir, "datalist.json")
    if not overwrite and _reusable(datalist_path, spec, out_dir, labels):
        return datalist_path
    entries: dict = {"training": [], "test": []}
    stats = []
    total = spec["num_train"] + spec["num_test"]
    for i in tqdm(range(total), desc=f"{prefix} patients", unit="patient"):
        split, sub = ("training", "Tr") if i < spec["num_train"] else ("test", "Ts")
        pid = f"{prefix}_{i:03d}"
        patient = make_patient(i)
        img_rel, lab_rel = f"images{sub}/{pid}.nii.gz", f"labels{sub}/{pid}.nii.gz"
        save_nifti(patient["image"], patient["affine"], os.path.join(out_dir, img_rel), overwrite, np.float32)
        save_nifti(patient["label"], patient["affine"], os.path.join(out_dir, lab_rel), overwrite, np.uint8)
        entries[split].append({"image": img_rel, "label": lab_rel, "id": pid})
        if "class" in patient["params"]:  # a class label per patient (the graded demo)
            entries[split][-1]["class"] = patient["params"]["class"]
        if "coordinates" in patient:  # the template coordinate of every voxel (demo_phantom, coordinates=True)
            coord_rel = f"coordinates{sub}/{pid}.nii.gz"
            save_nifti(
                patient["coordinates"], patient["affine"], os.path.join(out_dir, coord_rel), overwrite, np.float32
            )
            entries[split][-1]["coordinates"] = coord_rel
        foreground = patient["label"] > 0
        stats.append(
            {
                "id": pid,
                "split": split,
                **patient["params"],
                "focus_voxels": int(np.isin(patient["label"], labels.focus).sum()),
                "intensity_foreground_p1_p50_p99": np.percentile(patient["image"][foreground], [1, 50, 99])
                .round(4)
                .tolist(),
            }
        )
        if i < previews:
            save_triplanar(
                os.path.join(out_dir, "previews", f"{pid}.png"),
                patient["image"],
                patient["label"],
                title=patient.get("title", pid),
                overwrite=overwrite,
                affine=patient["affine"],
                focus=labels.focus,
                window=preview_window,
            )
    spacing = np.linalg.norm(np.asarray(patient["affine"])[:3, :3], axis=0).round(4).tolist()
    focus = [s["focus_voxels"] for s in stats]
    summary = {
        "patients": total,
        "size": spec["size"],
        "spacing_mm": spacing,
        "focus_labels": list(labels.focus),
        "focus_voxels_min_max": [min(focus), max(focus)],
        "focus_volume_ml_min_max": [round(v * float(np.prod(spacing)) / 1000, 2) for v in (min(focus), max(focus))],
        "seconds": round(time.time() - start, 1),
    }
    save_json({"summary": summary, "patients": stats}, os.path.join(out_dir, "statistics.json"), overwrite=True)
    save_json({**header, **labels.as_dict(), "spec": spec, **entries}, datalist_path, overwrite=True)
    logger.info(f"{prefix} dataset: {total} patients at {spec['size']} in {summary['seconds']} s -> {datalist_path}")
    logger.info(f"volume of labels {list(labels.focus)} (ml): {summary['focus_volume_ml_min_max']}")
    return datalist_path
