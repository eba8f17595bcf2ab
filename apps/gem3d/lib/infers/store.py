"""Adding a generated image and its mask to the datastore, for both tasks."""

from __future__ import annotations

import json
import tempfile

from ..request_scope import remove_when_request_ends


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
