"""What a request may leave behind and how a refusal is told apart: shared by the tasks and the server patches."""

from __future__ import annotations

import os
import shutil
import threading


class RequestError(ValueError):
    """A request the app refuses: the message says what is wrong (the server answers HTTP 422 with it)."""


_request_files = threading.local()  # sync endpoints run the whole request, task included, on one worker thread


def start_request() -> None:
    _request_files.paths = []


def remove_when_request_ends(path: str) -> None:
    """Called by a task: ``path`` (a file or folder) is removed once the current request has been answered."""
    if not hasattr(_request_files, "paths"):
        _request_files.paths = []
    _request_files.paths.append(path)


def take_request_files() -> list:
    """The paths registered by the current request, handed over (the caller removes them)."""
    paths, _request_files.paths = list(getattr(_request_files, "paths", [])), []
    return paths


def remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.unlink(path)


def remove_request_files() -> None:
    """Remove the files registered by the current request now (a failed request, or one job of a batch)."""
    for path in take_request_files():
        remove(path)


def is_refusal(exc: BaseException) -> bool:
    """A refused request: our ``RequestError`` or the bundle's ``Gem3dInputError`` (matched by name: the bundle is
    imported from its own folder, not as a package of the app)."""
    return isinstance(exc, RequestError) or type(exc).__name__ == "Gem3dInputError"


def refusal_in(exc: BaseException | None) -> BaseException | None:
    """The refusal that caused ``exc`` (MONAI Label wraps task errors), if any."""
    while exc is not None:
        if is_refusal(exc):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def int_param(params: dict, key: str, lo: int, hi: int, default=None) -> int:
    """``params[key]`` (or ``default``) as an integer in [lo, hi]; a refusal naming the parameter otherwise."""
    value = params.get(key, default)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise RequestError(f"parameter '{key}' must be an integer, got {params.get(key)!r}") from None
    if not lo <= value <= hi:
        raise RequestError(f"parameter '{key}' must lie in [{lo}, {hi}], got {value}")
    return value


def float_param(params: dict, key: str, lo: float, hi: float, default=None) -> float:
    """``params[key]`` (or ``default``) as a number in [lo, hi]; a refusal naming the parameter otherwise."""
    try:
        value = float(params.get(key, default))
    except (TypeError, ValueError):
        raise RequestError(f"parameter '{key}' must be a number, got {params.get(key)!r}") from None
    if not lo <= value <= hi:
        raise RequestError(f"parameter '{key}' must lie in [{lo}, {hi}], got {value}")
    return value
