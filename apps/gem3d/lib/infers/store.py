"""What both tasks share: an image-producing infer task, and adding its image with the mask to the datastore."""

from __future__ import annotations

import json
import tempfile
import threading

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from ..request_scope import remove_when_request_ends


class ImageTask(InferTask):
    """A task whose answer is a new image volume (a NIfTI file): ``config`` holds its default params, ``param_help``
    describes them in /info. The infer route runs in a thread pool, so requests can overlap; generation is
    compute-bound, so each task runs one at a time under ``lock``."""

    def __init__(self, datastore_fn, description: str, config: dict, param_help: dict):
        super().__init__(
            type=InferType.OTHERS,
            labels=None,
            dimension=3,
            description=description,
            config={**config, "result_extension": ".nii.gz"},
        )
        self.datastore_fn, self.param_help = datastore_fn, param_help
        self.lock = threading.Lock()

    def is_valid(self) -> bool:
        return True

    def info(self):
        info = super().info()
        info["output"] = "image"
        info["params"] = dict(self.param_help)
        return info


def store_result(ds, result: dict, new_id: str, label_info: dict) -> tuple[str, dict]:
    """Write ``result`` (``write_result``'s input) to a request-scoped folder, add its image as ``new_id`` (with the
    record as info) and its mask as that image's final label. Returns the image path (the response) and the
    record, JSON-clean."""
    from scripts.sampling.results import write_result  # the bundle's package, on sys.path once the app loaded it

    folder = tempfile.mkdtemp(prefix="gem3d_")
    remove_when_request_ends(folder)  # the datastore keeps its own copies; the answer is sent before removal
    paths = write_result(result, folder, new_id, overwrite=True)
    record = json.loads(json.dumps(result["record"], default=str))
    ds.add_image(new_id, paths["image"], {"gem3d": record})
    ds.save_label(new_id, paths["label"], "final", label_info)
    return paths["image"], record
