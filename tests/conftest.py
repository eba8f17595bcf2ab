"""Shared fixtures: the bundle on sys.path, a tiny demo dataset, and a helper that runs bundle configs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(ROOT, "bundle")
CONFIGS = os.path.join(BUNDLE, "configs")
if BUNDLE not in sys.path:
    sys.path.insert(0, BUNDLE)


def run_bundle(configs: list[str], overrides: dict | None = None, timeout: int = 600, check: bool = True, env=None):
    """Run ``python -m monai.bundle run`` on layered configs in a subprocess (the way users run the jobs)."""
    files = [c if os.path.isabs(c) else os.path.join(CONFIGS, c) for c in configs]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(files)]
    for k, v in (overrides or {}).items():
        cmd += [f"--{k}", v if isinstance(v, str) else repr(v)]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2", **(env or {})}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"bundle run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> str:
    """A 4 + 2 patient demo set at 32^3 (the generator itself, just smaller); returns its datalist path."""
    from scripts.data.demo_phantom import build_demo_dataset

    out = str(tmp_path_factory.mktemp("demo"))
    return build_demo_dataset(out, num_train=4, num_test=2, size=(32, 32, 32), seed=1, previews=1)
