"""The bundle's packaging: metadata validates against the model-zoo schema; every config parses."""

import glob
import json
import os
import subprocess
import sys

from conftest import BUNDLE, CONFIGS, ROOT

# The model zoo's metadata schema (MONAI model-zoo, Apache-2.0), kept with the tests so a clean clone validates
# offline; when the project's shared copy is beside the checkout, the two must be the same file.
SCHEMA = os.path.join(ROOT, "tests", "data", "meta_schema_20240725.json")
SHARED_SCHEMA = os.path.join(os.path.dirname(ROOT), "shared", "schemas", "meta_schema_20240725.json")


def test_metadata_validates_against_schema():
    assert os.path.isfile(SCHEMA), f"schema missing at {SCHEMA}"
    if os.path.isfile(SHARED_SCHEMA):
        assert open(SHARED_SCHEMA, "rb").read() == open(SCHEMA, "rb").read(), "tests/data schema differs from shared/"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "verify_metadata",
        "--meta_file",
        os.path.join(CONFIGS, "metadata.json"),
        "--filepath",
        SCHEMA,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "verified with no error" in proc.stdout + proc.stderr
    meta = json.load(open(os.path.join(CONFIGS, "metadata.json")))
    assert meta["version"] in meta["changelog"]


def test_configs_are_json_and_bundle_is_complete():
    for path in glob.glob(os.path.join(CONFIGS, "*.json")):
        with open(path) as f:
            json.load(f)
    for rel in ("LICENSE", "docs/README.md", "configs/logging.conf", "docs/data_license.txt"):
        assert os.path.isfile(os.path.join(BUNDLE, rel)), rel


def test_metadata_states_the_shipped_model_grid():
    from scripts.data.model_space import read_model_grid

    meta = json.load(open(os.path.join(CONFIGS, "metadata.json")))
    grid = read_model_grid(os.path.join(CONFIGS, "..", meta["model_grid"]["file"]))
    assert list(grid.spacing) == meta["model_grid"]["spacing_mm"] and grid.size == meta["model_grid"]["in_plane_size"]
    assert list(grid.slices) == meta["model_grid"]["slices_seen"]


def test_metadata_states_the_shipped_label_set():
    from scripts.data.label_set import LabelSet, label_set

    meta = json.load(open(os.path.join(CONFIGS, "metadata.json")))
    shipped = label_set(os.path.join(CONFIGS, "..", meta["label_set"]["file"]), "unused")
    assert LabelSet.from_dict(meta["label_set"], "metadata.json") == shipped
    assert meta["network_data_format"]["inputs"]["mask"]["value_range"] == [0, shipped.num_labels - 1]


def test_importing_the_package_has_no_side_effects():
    """The MONAI Label server imports the bundle's package: no matplotlib backend switch, no eager subpackages."""
    code = (
        "import sys, matplotlib; matplotlib.use('svg'); sys.path.insert(0, 'bundle'); import scripts; "
        "from scripts.sampling import synthesize; from scripts import evaluate; "
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend(); "
        "assert 'scripts.downstream' not in sys.modules and 'scripts.benchmark' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
