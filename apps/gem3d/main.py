"""gem3d MONAI Label app: 3D Slicer (or any MONAI Label client) requests synthetic volumes from the gem3d bundle.

Options (``--conf key value``):
    bundle      path of the gem3d bundle (default: the repository's bundle/ folder)
    overrides   JSON object of bundle config overrides, e.g. '{"steps": 20}' or another model_dir
    repeats     default k for the batch enhancement of the datastore (default 1)

Tasks: ``gem3d_synthesis`` (one mask -> one new image, stored in the datastore), ``gem3d_generate_case`` (tumour
attributes -> a new image with its mask, from the joint model, stored in the datastore) and, through MONAI Label's batch
infer, the enhancement of the whole datastore (``POST /batch/infer/gem3d_synthesis``, params ``repeats``, ``seed``,
``steps``, ``augment``; default augmentation: the bundle's ``enhance.json``).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile

import lib.infers
import lib.strategies
from lib.bundle import bundle_setting, load_bundle
from lib.internals import install_batch_reload, install_threaded_infer_route
from lib.request_scope import RequestError
from monailabel.interfaces.app import MONAILabelApp

logger = logging.getLogger(__name__)

_UPLOAD = re.compile(r"^tmp[A-Za-z0-9_]{8}\.(nii|nii\.gz|nrrd)$")


class MyApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        self.parser = load_bundle(conf.get("bundle"), conf.get("overrides"))
        self.repeats = int(conf.get("repeats", 1))
        self.synthesizers = self.parser.get_parsed_content("synthesizers")
        self.backend = self.parser.get_parsed_content("backend")
        for synth in self.synthesizers.values():
            synth.sampler.progress = False
        self.case_generator = self.parser.get_parsed_content("case_generator")
        self.case_generator.progress = False
        self.enhance_augment = bundle_setting(conf.get("bundle"), "enhance.json", "augment")
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
            self.synthesizers, self.backend, self.datastore, "GEM-3D synthesis of an image volume for a mask"
        )
        generate = lib.infers.CaseGenerationTask(
            self.case_generator, self.datastore, "A new image with its tumour mask from tumour attributes (joint model)"
        )
        return {"gem3d_synthesis": task, "gem3d_generate_case": generate}

    def init_batch_infer(self):
        return lib.infers.DatastoreEnhancement("gem3d_synthesis", self.repeats, self.enhance_augment)

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
