"""A fork server for the tests' ``python -m monai.bundle run`` calls.

Importing MONAI (it loads every submodule, and through them ignite, mlflow, scipy, scikit-image, matplotlib) takes
about 10 s on a 2-core machine, and the suite runs some 80 bundle jobs: most of its time was imports. This server
imports the heavy libraries once, then forks a fresh child per job. The child is the command line itself: it sets
``sys.argv``, the working directory and the environment, sends its stdout and stderr to files, and runs
``monai.bundle`` as ``__main__`` (what ``python -m monai.bundle`` does), so each job still runs in its own process
with its own exit status. The repository's own package ``scripts`` is not preloaded: every job imports it afresh.

Protocol (one JSON object a line): the client writes ``{"argv", "cwd", "env", "stdout", "stderr"}``; the server
answers ``{"pid"}`` when the child starts and ``{"pid", "rc"}`` when it ends (rc < 0: killed by that signal).
"""

from __future__ import annotations

import json
import os
import sys


def _child(request: dict) -> int:
    """Run one job in this (forked) process; returns its exit status."""
    import atexit
    import runpy
    import traceback

    os.setsid()  # its own process group, so a timeout kills the job's workers too
    os.chdir(request["cwd"])
    os.environ.clear()  # exactly the environment the test asked for, not the server's
    os.environ.update(request["env"])
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = list(request["argv"])
    code = 0
    try:
        runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # what interpreter shutdown does (log and event-file flushes), then leave
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def serve() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import ignite  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import monai  # noqa: F401
    import monai.bundle  # noqa: F401
    import monai.handlers  # noqa: F401
    import torch  # noqa: F401

    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            sys.stdin.close()
            os._exit(_child(request))
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        out.write(json.dumps({"pid": pid, "rc": rc}) + "\n")
        out.flush()


if __name__ == "__main__":
    serve()
