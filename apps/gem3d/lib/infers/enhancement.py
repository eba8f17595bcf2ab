"""Dataset enhancement of the datastore through MONAI Label's batch-infer extension point.

Every (non-synthetic) image with a saved label gets ``repeats`` new synthetic images; each job is a single infer
request made through the app's own ``infer``, so it passes exactly the checks a request from Slicer passes.
"""

from __future__ import annotations

import logging
import time

from monailabel.interfaces.tasks.batch_infer import BatchInferTask

from ..request_scope import RequestError, remove_request_files
from .synthesis import SYNTHETIC_PREFIX

logger = logging.getLogger(__name__)

MAX_REPEATS = 100


class DatastoreEnhancement(BatchInferTask):
    def __init__(self, model: str, repeats: int = 1, augment: str = "none"):
        super().__init__()
        self.model, self.repeats, self.augment = model, int(repeats), augment

    def get_images(self, request, datastore):
        """Images with a saved label (final or original), synthetic ones excluded."""
        return sorted(
            i
            for i in datastore.list_images()
            if not i.startswith(SYNTHETIC_PREFIX)
            and (datastore.get_label_uri(i, "final") or datastore.get_label_uri(i, "original"))
        )

    def __call__(self, request, datastore, infer):
        try:
            repeats, seed = int(request.get("repeats", self.repeats)), int(request.get("seed", 0))
        except (TypeError, ValueError):
            raise RequestError(f"'repeats' and 'seed' must be integers, got {request}") from None
        if not 1 <= repeats <= MAX_REPEATS:
            raise RequestError(f"'repeats' must lie in [1, {MAX_REPEATS}], got {repeats}")
        jobs = [(image_id, r) for r in range(repeats) for image_id in self.get_images(request, datastore)]
        done, start = [], time.time()
        for n, (image_id, r) in enumerate(jobs, 1):
            params = {k: request[k] for k in ("steps", "position") if k in request}
            job = {
                "model": self.model,
                "image": image_id,
                **params,
                "seed": seed + r,
                "augment": request.get("augment", self.augment),
                "informed": "image",
            }
            try:
                res = infer(job, datastore)
            finally:
                remove_request_files()  # the datastore holds its own copies of the job's outputs
            new_id = res["params"]["synthetic_image_id"]
            done.append(new_id)
            logger.info(f"gem3d batch: {n}/{len(jobs)} {new_id} ({time.time() - start:.0f} s)")
        return {"synthetic_images": done, "count": len(done)}
