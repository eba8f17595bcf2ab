"""Three changes to MONAI Label 0.8.5's server that a generative task needs.

1. ``POST /infer/{model}`` is an ``async def`` that runs inference synchronously, which blocks the event loop
   for the whole generation (no ``/info``, no datastore calls meanwhile). It is re-registered here as a plain
   ``def`` endpoint, which FastAPI runs in its thread pool, so the server keeps answering.
2. Bad requests (our ``RequestError``, ``params`` that are not JSON, an upload that is not NIfTI) become HTTP 422
   with the message, naming the upload by its file name, instead of a 500. Every request's working files (the
   uploaded mask, the task's output folder) are removed when it ends, failed or not: MONAI Label removes them only
   after a successful response.
3. A batch task runs in a subprocess that adds images to the datastore on disk; the server only learns of them
   through its file watcher, which can miss the subprocess's last write of datastore.json (seen in the test suite:
   a finished batch whose images never appeared). When a batch task ends, the server now reloads the datastore.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from typing import Optional

from fastapi import BackgroundTasks, Depends, File, Form, HTTPException, UploadFile
from fastapi.routing import APIRoute

logger = logging.getLogger(__name__)


class RequestError(ValueError):
    """A request the app refuses: the message says what is wrong."""


_request_files = threading.local()  # sync endpoints run the whole request, task included, on one worker thread


def remove_when_request_ends(path: str) -> None:
    """Called by a task: ``path`` (a file or folder) is removed once the current request has been answered."""
    if not hasattr(_request_files, "paths"):
        _request_files.paths = []
    _request_files.paths.append(path)


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.unlink(path)


def is_refusal(exc: BaseException) -> bool:
    """A refused request: our ``RequestError`` or the bundle's ``Gem3dInputError`` (matched by name: the bundle is
    imported from its own folder, not as a package of the app)."""
    return isinstance(exc, RequestError) or type(exc).__name__ == "Gem3dInputError"


def _unwrap(exc: BaseException) -> RequestError | None:
    while exc is not None:
        if is_refusal(exc):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def install_threaded_infer_route() -> bool:
    from monailabel.app import app
    from monailabel.config import settings
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
        _request_files.paths = []
        try:
            response = run_inference(
                background_tasks, model, image, session_id, json.dumps(parsed), file, label, output
            )
        except HTTPException:
            remove_request_files()
            raise
        except Exception as exc:
            remove_request_files()
            err = _unwrap(exc)
            if err is None:
                raise
            logger.warning(f"rejected infer request: {err}")
            raise HTTPException(status_code=422, detail=str(err)) from exc
        for path in _request_files.paths:
            background_tasks.add_task(_remove, path)
        _request_files.paths = []
        return response

    from monailabel.endpoints import infer as infer_endpoints

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


def remove_request_files() -> None:
    """Remove the files registered by the current request now (a failed request, or one job of a batch)."""
    for path in getattr(_request_files, "paths", []):
        _remove(path)
    _request_files.paths = []


def install_batch_reload(datastore) -> None:
    """Reload ``datastore()`` from disk after every background ``batch_infer`` task (change 3)."""
    from monailabel.utils.async_tasks import task as task_module

    original = task_module.run_background_task
    if getattr(original, "gem3d_reload", False):
        return

    def run_background_task(request, method, callback=None, debug=False):
        def done(task):
            if method == "batch_infer":
                ds = datastore()
                # the file first (it carries the records the subprocess wrote), then the files on disk; MONAI
                # Label 0.8.5 has no public "reload from file"
                if hasattr(ds, "_init_from_datastore_file"):
                    ds._init_from_datastore_file()
                ds.refresh()
                logger.info("batch task ended: datastore reloaded from disk")
            if callback:
                callback(task)

        return original(request, method, done, debug)

    run_background_task.gem3d_reload = True
    task_module.run_background_task = run_background_task
