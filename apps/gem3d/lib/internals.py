"""The two places where the app reaches into MONAI Label 0.8.5's internals, and why its public API is not enough.

1. ``POST /infer/{model}`` is an ``async def`` that runs inference synchronously, blocking the event loop for the
   whole generation (no ``/info``, no datastore calls meanwhile); the public API has no way to change how a route
   runs. It is re-registered here as a plain ``def`` endpoint, which FastAPI runs in its thread pool. The new
   endpoint also answers refusals (``RequestError``, the bundle's ``Gem3dInputError``, ``params`` that are not
   JSON) with HTTP 422 naming the upload by its file name instead of a 500, and removes each request's working files
   when it ends, failed or not (MONAI Label removes them only after a successful response).
2. A batch task runs in a subprocess that adds images to the datastore on disk; the server learns of them only
   through its file watcher, which can miss the subprocess's last write of datastore.json, and the public datastore
   API has no "reload from file". When a batch task ends, the server reloads the datastore.

``tests/test_label_app.py`` checks that both hooks still find what they patch, so a MONAI Label upgrade that moves
them fails there, loudly, rather than silently in production.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Optional

from fastapi import BackgroundTasks, Depends, File, Form, HTTPException, UploadFile
from fastapi.routing import APIRoute

from .request_scope import refusal_in, remove, remove_request_files, start_request, take_request_files

logger = logging.getLogger(__name__)


def install_threaded_infer_route() -> bool:
    """Replace MONAI Label's infer route (change 1); True when the route was found and replaced."""
    from monailabel.app import app
    from monailabel.config import settings
    from monailabel.endpoints import infer as infer_endpoints
    from monailabel.endpoints.infer import ResultType, run_inference
    from monailabel.endpoints.user.auth import RBAC, User

    path = settings.MONAI_LABEL_API_STR + "/infer/{model}"

    def api_run_inference(
        background_tasks: BackgroundTasks,
        model: str,
        image: str = "",
        session_id: str = "",
        params: str = Form("{}"),
        file: UploadFile = File(None),
        label: UploadFile = File(None),
        output: Optional[ResultType] = None,
        user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER)),
    ):
        try:
            parsed = json.loads(params) if params else {}
            if not isinstance(parsed, dict):
                raise ValueError("expected a JSON object")
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=f"'params' is not a JSON object: {exc}") from None
        if label is not None and label.filename:
            parsed["upload_name"] = os.path.basename(label.filename)  # errors name the upload, not a temp path
        start_request()
        try:
            response = run_inference(
                background_tasks, model, image, session_id, json.dumps(parsed), file, label, output
            )
        except HTTPException:
            remove_request_files()
            raise
        except Exception as exc:
            remove_request_files()
            err = refusal_in(exc)
            if err is None:
                raise
            logger.warning(f"rejected infer request: {err}")
            raise HTTPException(status_code=422, detail=str(err)) from exc
        for p in take_request_files():
            background_tasks.add_task(remove, p)
        return response

    replaced = False
    # FastAPI >= 0.120 resolves included routers lazily from the original router: replace the route there.
    router = infer_endpoints.router
    for route in list(router.routes):
        if isinstance(route, APIRoute) and route.path == "/infer/{model}" and "POST" in route.methods:
            router.routes.remove(route)
            router.add_api_route(
                "/{model}", api_run_inference, methods=["POST"], summary=route.summary, responses=route.responses
            )
            replaced = True
    # Older FastAPI copies routes into the app at include time: replace the copy too.
    for i, route in enumerate(app.router.routes):
        if isinstance(route, APIRoute) and route.path == path and "POST" in route.methods:
            app.router.routes[i] = APIRoute(
                path,
                api_run_inference,
                methods=["POST"],
                summary=route.summary,
                tags=route.tags,
                responses=route.responses,
            )
            replaced = True
    if not replaced:
        logger.warning(f"route {path} not found; inference runs on the event loop")
    return replaced


def install_batch_reload(datastore) -> bool:
    """Reload ``datastore()`` from disk after every background ``batch_infer`` task (change 2); True when the hook
    is in place."""
    from monailabel.utils.async_tasks import task as task_module

    original = task_module.run_background_task
    if getattr(original, "gem3d_reload", False):
        return True

    def run_background_task(request, method, callback=None, debug=False):
        def done(task):
            if method == "batch_infer":
                ds = datastore()
                # the file first (it carries the records the subprocess wrote), then the files on disk
                if hasattr(ds, "_init_from_datastore_file"):
                    ds._init_from_datastore_file()
                ds.refresh()
                logger.info("batch task ended: datastore reloaded from disk")
            if callback:
                callback(task)

        return original(request, method, done, debug)

    run_background_task.gem3d_reload = True
    task_module.run_background_task = run_background_task
    return True
