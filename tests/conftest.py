"""Shared fixtures: the bundle on sys.path, a tiny demo dataset, and a helper that runs bundle configs (through a
fork server, bundle_server.py, so that MONAI is imported once per session rather than once per job)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(ROOT, "bundle")
CONFIGS = os.path.join(BUNDLE, "configs")
if BUNDLE not in sys.path:
    sys.path.insert(0, BUNDLE)


class _BundleServer:
    """The client of ``bundle_server.py``: one server per test session, started on first use."""

    def __init__(self):
        self.proc, self.buffer = None, b""

    def _message(self, timeout: float | None = None) -> dict | None:
        """The server's next line, or None after ``timeout`` seconds without one (raw reads: a buffered reader could
        hold the second line while select waits on the pipe)."""
        fd = self.proc.stdout.fileno()
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("the bundle test server died; its traceback is above")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, argv: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
        if self.proc is None or self.proc.poll() is not None:
            server = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundle_server.py")
            self.proc = subprocess.Popen(
                [sys.executable, server], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            self.buffer = b""
        with tempfile.TemporaryDirectory() as tmp:
            out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
            request = {"argv": argv, "cwd": ROOT, "env": env, "stdout": out, "stderr": err}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            pid = self._message()["pid"]
            done = self._message(timeout)
            if done is None:
                os.killpg(pid, signal.SIGKILL)
                self._message()
            rc = None if done is None else done["rc"]
            stdout, stderr = (open(p, errors="replace").read() for p in (out, err))
        if done is None:
            raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr)
        return subprocess.CompletedProcess(argv, rc, stdout, stderr)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


_SERVER = _BundleServer()


def run_bundle(configs: list[str], overrides: dict | None = None, timeout: int = 600, check: bool = True):
    """Run ``python -m monai.bundle run`` on layered configs, the way users run the jobs: each job is its own process,
    forked from ``bundle_server.py`` (which has MONAI imported already) and running ``monai.bundle`` as ``__main__``."""
    files = [c if os.path.isabs(c) else os.path.join(CONFIGS, c) for c in configs]
    argv = ["monai.bundle", "run", "--config_file", str(files)]
    for k, v in (overrides or {}).items():
        argv += [f"--{k}", v if isinstance(v, str) else repr(v)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
    proc = _SERVER.run(argv, env, timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"bundle run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def pytest_sessionfinish(session, exitstatus):
    _SERVER.close()


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> str:
    """A 4 + 2 patient demo set at 32^3 (the generator itself, just smaller); returns its datalist path."""
    from scripts.data.demo_phantom import build_demo_dataset

    out = str(tmp_path_factory.mktemp("demo"))
    return build_demo_dataset(out, num_train=4, num_test=2, size=(32, 32, 32), seed=1, previews=1)
