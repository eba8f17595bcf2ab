"""gem3d MONAI Label app: 3D Slicer (or any MONAI Label client) requests synthetic volumes from the gem3d bundle.

Options (``--conf key value``):
    bundle      path of the gem3d bundle (default: the repository's bundle/ folder)
    overrides   JSON object of bundle config overrides, e.g. '{"steps": 20}' or another model_dir
    repeats     default k for the batch enhancement of the datastore (default 1)
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time

import lib.infers
import lib.strategies
from lib.bundle import load_bundle
from lib.server import RequestError, install_batch_reload, install_threaded_infer_route, remove_request_files
from monailabel.interfaces.app import MONAILabelApp

logger = logging.getLogger(__name__)

_UPLOAD = re.compile(r"^tmp[A-Za-z0-9_]{8}\.(nii|nii\.gz|nrrd)$")


class MyApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        self.parser = load_bundle(conf.get("bundle"), conf.get("overrides"))
        self.repeats = int(conf.get("repeats", 1))
        self.synthesizer = self.parser.get_parsed_content("synthesizer")
        self.synthesizer.sampler.progress = False
        meta = self.parser.get("_meta_", {})
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="gem3d",
            description="GEM-3D: synthesize 3D image volumes from segmentation masks",
            version=meta.get("version", "0"),
        )
        install_threaded_infer_route()
        install_batch_reload(self.datastore)

    def init_infers(self):
        task = lib.infers.SynthesisTask(
            self.synthesizer, self.datastore, "GEM-3D synthesis of an image volume for a mask"
        )
        return {"gem3d_synthesis": task}

    def init_strategies(self):
        return {"gem3d_synthetic": lib.strategies.NextSynthetic()}

    def init_trainers(self):
        return {}

    def infer(self, request, datastore=None):
        """Requests name datastore ids, never paths: check them before MONAI Label resolves anything."""
        request = dict(request)
        image_id = request.get("image")
        ds = datastore or self.datastore()
        if not isinstance(image_id, str) or image_id not in ds.list_images():
            raise RequestError(f"image {image_id!r} is not an image id of this datastore")
        label = request.get("label")
        if label is not None:
            real = os.path.realpath(str(label))
            if os.path.dirname(real) != os.path.realpath(tempfile.gettempdir()) or not _UPLOAD.match(
                os.path.basename(real)
            ):
                raise RequestError("'label' must be an uploaded mask file (form field 'label'), not a path")
        request["image_id"] = image_id
        request["save_label"] = False  # the result is an image; it is stored as a new datastore image instead
        return super().infer(request, ds)

    def batch_infer(self, request, datastore=None):
        """Enhance the datastore: every (non-synthetic) image with a saved label, ``repeats`` times."""
        ds = datastore or self.datastore()
        task = self._infers["gem3d_synthesis"]
        k = int(request.get("repeats", self.repeats))
        sources = [
            i
            for i in ds.list_images()
            if not i.startswith(lib.infers.synthesis.SYNTHETIC_PREFIX)
            and (ds.get_label_uri(i, "final") or ds.get_label_uri(i, "original"))
        ]
        jobs = [(i, r) for r in range(k) for i in sorted(sources)]
        done = []
        start = time.time()
        for n, (image_id, r) in enumerate(jobs, 1):
            seed = int(request.get("seed", 0)) + r
            _, res = task(
                {
                    "image": ds.get_image_uri(image_id),
                    "image_id": image_id,
                    "seed": seed,
                    "steps": request.get("steps", self.synthesizer.settings.steps),
                    "augment": request.get("augment", "mri"),
                    "informed": "image",
                }
            )
            remove_request_files()  # the datastore holds its own copies of the job's outputs
            done.append(res["synthetic_image_id"])
            print(f"gem3d batch: {n}/{len(jobs)} {res['synthetic_image_id']} ({time.time() - start:.0f} s)", flush=True)
        return {"synthetic_images": done, "count": len(done)}
