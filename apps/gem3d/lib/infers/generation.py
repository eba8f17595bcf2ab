"""The case-generation task: tumour attributes in, a new image with its mask out (the bundle's joint model), both
added to the datastore so that Slicer's Next Sample shows them.

MONAI Label's infer route needs an image id; this task takes any image of the datastore (Slicer sends the current
one) and does not read it: the new case does not depend on it.
"""

from __future__ import annotations

import logging
import time

from ..request_scope import RequestError, float_param, int_param
from .store import ImageTask, store_result
from .synthesis import SYNTHETIC_PREFIX

logger = logging.getLogger(__name__)

PARAMS = {
    "seed": 0,
    "steps": None,  # None: the bundle's joint_steps
    "guidance_scale": None,  # None: the bundle's joint_guidance_scale
    "volume_ml": None,
    "sphericity": None,
    "surface_mm2": None,
    "centre": None,  # [x, y, z] (or "x,y,z") in [0, 1] of the anatomy's bounding box, RAS
    "extent": None,
    "count": None,
    "healthy": False,
}


def _vector(params, key):
    value = params.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = [float(v) for v in value.replace("[", "").replace("]", "").split(",")]
        except ValueError:
            raise RequestError(f"parameter '{key}' must be three numbers x,y,z, got {params.get(key)!r}") from None
    return value


class CaseGenerationTask(ImageTask):
    """A new labelled case from tumour attributes; unspecified attributes come from the training distribution."""

    def __init__(self, generator, datastore_fn, description: str):
        steps = generator.model.scheduler.num_train_timesteps
        help_ = {
            "seed": "integer >= 0",
            "steps": f"solver steps, 1..{steps}",
            "guidance_scale": "classifier-free guidance, 0..20 (1: none)",
            "volume_ml": "tumour volume in ml, >= 0 (0: healthy)",
            "sphericity": "0..1",
            "surface_mm2": ">= 0",
            "centre": "x,y,z in [0, 1] of the anatomy's box (RAS: left->right, back->front, foot->head)",
            "extent": "x,y,z in [0, 1] of the anatomy's box",
            "count": "number of tumours, >= 0",
            "healthy": "true: no tumour",
        }
        config = {**PARAMS, "steps": generator.steps, "guidance_scale": generator.guidance}
        super().__init__(datastore_fn, description, config, help_)
        self.generator = generator

    def __call__(self, request):
        from scripts.sampling.generate_cases import tumour_request  # the bundle's package, on sys.path

        gen = self.generator
        seed = int_param(request, "seed", 0, 2**31 - 1, 0)
        steps = int_param(request, "steps", 1, gen.model.scheduler.num_train_timesteps, gen.steps)
        guidance = float_param(request, "guidance_scale", 0.0, 20.0, gen.guidance)
        healthy = str(request.get("healthy", False)).lower() in ("1", "true", "yes")
        attrs = {k: request.get(k) for k in ("volume_ml", "sphericity", "surface_mm2", "count")}
        wanted = tumour_request(
            attrs["volume_ml"],
            attrs["sphericity"],
            attrs["surface_mm2"],
            _vector(request, "centre"),
            _vector(request, "extent"),
            attrs["count"],
            healthy,
        )  # a bad attribute is a Gem3dInputError naming it: HTTP 422
        start = time.time()
        with self.lock:
            saved = gen.steps, gen.guidance
            gen.steps, gen.guidance = steps, guidance
            try:
                result = gen.generate(wanted, seed)
            finally:
                gen.steps, gen.guidance = saved
        ds = self.datastore_fn()
        new_id, n = f"{SYNTHETIC_PREFIX}case_s{seed}", 1
        while new_id in ds.list_images():
            n += 1
            new_id = f"{SYNTHETIC_PREFIX}case_s{seed}_{n}"
        out, record = store_result(ds, result, new_id, {"gem3d_generated": True})
        logger.info(f"generated {new_id} in {time.time() - start:.1f} s")
        return out, {"generated_image_id": new_id, "seconds": round(time.time() - start, 2), **record}
