"""The synthesis infer task: a mask in, a synthetic image volume out, also stored in the datastore."""

from __future__ import annotations

import logging
import re
import time

from ..request_scope import RequestError, float_param, int_param, is_refusal, remove_when_request_ends
from .store import ImageTask, store_result

logger = logging.getLogger(__name__)

SYNTHETIC_PREFIX = "gem3d_"
PARAMS = {
    "seed": 0,
    "steps": None,  # None: the bundle's configured default (inference.json ``steps``)
    "position": 0.5,
    "informed": "image",  # "image" (the request's own image), "ig", or another datastore image id
    "informed_slice": -1,  # -1: the slice at `position`
    "augment": "none",  # a preset name of the bundle's AugmentSettings
    "backend": None,  # None: the bundle's configured backend; else a name from its ``synthesizers``
}


def _as_int(params, key, lo, hi):
    return int_param(params, key, lo, hi, PARAMS[key])


def _as_float(params, key, lo, hi):
    return float_param(params, key, lo, hi, PARAMS[key])


class SynthesisTask(ImageTask):
    """GEM-3D: synthesize an image volume for a mask (uploaded, or the image's saved label)."""

    def __init__(self, synthesizers: dict, default_backend: str, datastore_fn, description: str):
        # the bundle's backends by name (GEM-3D, the 3D backend); weights load when a request first uses one
        self.synths, self.default_backend = dict(synthesizers), default_backend
        self.synth = self.synths[default_backend]
        # each request runs the shared synthesizer with its own steps (a variant) and augmentation
        help_ = {
            "seed": "integer >= 0",
            "steps": f"solver steps, 1..{self.max_steps(self.synth)} (default {self.synth.settings.steps})",
            "position": "start position p in [0, 1]",
            "informed": "'image' | 'ig' | <datastore image id>",
            "informed_slice": "-1 or a slice index",
            "augment": " | ".join(self.augment_presets),
            "backend": " | ".join(sorted(self.synths)) + f" (default {self.default_backend})",
        }
        config = {**PARAMS, "steps": self.synth.settings.steps, "backend": default_backend, "result_dtype": "float32"}
        super().__init__(datastore_fn, description, config, help_)

    @staticmethod
    def max_steps(synth) -> int:
        """Solver steps are bounded by the training timesteps of the backend's noise schedule."""
        return int(synth.model.scheduler.num_train_timesteps)

    @property
    def augment_presets(self) -> list:
        return sorted(type(self.synth.augment).presets())

    def _mask_path(self, request, image_id) -> str:
        upload = request.get("label")
        if upload:
            remove_when_request_ends(upload)  # MONAI Label removes it only after a successful answer
            return upload  # the app has checked that this is the server's own upload file
        ds = self.datastore_fn()
        for tag in ("final", "original"):
            path = ds.get_label_uri(image_id, tag)
            if path:
                return path
        raise RequestError(f"no mask: upload one as 'label' or save a label for image {image_id!r}")

    def __call__(self, request):
        upload, name = request.get("label"), request.get("upload_name")
        try:
            return self._run(request)
        except Exception as exc:
            if upload and name and is_refusal(exc):
                # the message names the user's upload, not the server's temporary copy of it
                raise RequestError(str(exc).replace(upload, f"upload {name!r}")) from exc
            raise

    def _backend(self, request):
        name = request.get("backend") or self.default_backend
        if name not in self.synths:
            raise RequestError(f"parameter 'backend' must be one of {sorted(self.synths)}, got {name!r}")
        return name, self.synths[name]

    def _run(self, request):
        from scripts.data.datalist import nifti_shape  # the bundle's package, on sys.path once the app loaded it

        ds = self.datastore_fn()
        image_id = request["image_id"]
        image_path = request["image"]
        backend, synth = self._backend(request)
        seed = _as_int(request, "seed", 0, 2**31 - 1)
        steps = _as_int(
            {**request, "steps": request.get("steps", synth.settings.steps)}, "steps", 1, self.max_steps(synth)
        )
        position = _as_float(request, "position", 0.0, 1.0)
        augment = str(request.get("augment", PARAMS["augment"]))
        if augment not in self.augment_presets:
            raise RequestError(f"parameter 'augment' must be one of {self.augment_presets}, got {augment!r}")
        informed_slice = _as_int(request, "informed_slice", -1, 100000)
        source = str(request.get("informed", "image"))
        slice_ = None if informed_slice < 0 else informed_slice
        if source == "image":
            informed = {"mode": "true", "slice": slice_}
        elif source == "ig":
            informed = {"mode": "ig"}
        else:
            other = ds.get_image_uri(source)
            if not other:
                raise RequestError(f"informed image {source!r} is not in the datastore")
            informed = {"mode": "file", "file": other, "slice": slice_}
        mask_path = self._mask_path(request, image_id)
        mask_shape, image_shape = nifti_shape(mask_path), nifti_shape(image_path)  # headers only: synthesis loads
        if mask_shape[:3] != image_shape[:3]:
            raise RequestError(f"the mask's shape {mask_shape} differs from image {image_id!r}'s shape {image_shape}")
        start = time.time()
        with self.lock, synth.variant({"steps": steps, "augment": augment}):
            result = synth.synthesize(
                mask_path, seed, image_id, image_path=image_path, informed=informed, position=position
            )
        suffix = "" if backend == self.default_backend else f"_{backend}"
        new_id = f"{SYNTHETIC_PREFIX}{re.sub(r'[^A-Za-z0-9_.-]', '_', image_id)}_s{seed}{suffix}"
        out, record = store_result(ds, result, new_id, {"gem3d_mask_of": image_id})
        logger.info(f"synthesized {new_id} in {time.time() - start:.1f} s")
        return out, {"synthetic_image_id": new_id, "seconds": round(time.time() - start, 2), **record}
