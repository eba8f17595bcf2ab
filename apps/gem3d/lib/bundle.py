"""Find the gem3d bundle, put it on sys.path and build its objects from its own configs."""

from __future__ import annotations

import json
import os
import sys

DEFAULT_BUNDLE = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "bundle"))


def bundle_dir_of(bundle_dir: str | None) -> str:
    return os.path.abspath(bundle_dir or DEFAULT_BUNDLE)


def bundle_setting(bundle_dir: str | None, config: str, key: str):
    """One plain setting of one of the bundle's configs (e.g. ``enhance.json``'s ``augment``), read, not copied."""
    from monai.bundle import ConfigParser

    return ConfigParser.load_config_file(os.path.join(bundle_dir_of(bundle_dir), "configs", config))[key]


def load_bundle(bundle_dir: str | None = None, overrides: dict | str | None = None):
    """Return a ``ConfigParser`` of the bundle's ``inference.json`` (+ metadata) with ``overrides`` applied."""
    from monai.bundle import ConfigParser

    bundle_dir = bundle_dir_of(bundle_dir)
    config = os.path.join(bundle_dir, "configs", "inference.json")
    if not os.path.isfile(config):
        raise FileNotFoundError(f"gem3d bundle not found: {config} (pass --conf bundle <folder>)")
    if bundle_dir not in sys.path:
        sys.path.insert(0, bundle_dir)
    parser = ConfigParser()
    parser.read_config(config)
    parser.read_meta(os.path.join(bundle_dir, "configs", "metadata.json"))
    if isinstance(overrides, str) and overrides:
        overrides = json.loads(overrides)
    parser.update(overrides or {})
    return parser
