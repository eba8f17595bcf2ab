"""The MONAI Label app with a real server on 127.0.0.1 and the client class the Slicer plugin uses."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import nibabel as nib
import numpy as np
import pytest
import requests
from conftest import ROOT
from tiny_model import make_tiny_model

APP = os.path.join(ROOT, "apps", "gem3d")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_demo):
    root = tmp_path_factory.mktemp("label")
    overrides = make_tiny_model(str(root / "models"), os.path.dirname(tiny_demo))
    overrides["steps"] = 40  # long enough to probe /info while it runs
    studies = root / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    base = os.path.dirname(tiny_demo)
    for item in json.load(open(tiny_demo))["training"][:2]:
        shutil.copy(os.path.join(base, item["image"]), studies / f"{item['id']}.nii.gz")
        shutil.copy(os.path.join(base, item["label"]), studies / "labels" / "final" / f"{item['id']}.nii.gz")
    port = _free_port()
    log = open(root / "server.log", "w")
    (root / "tmp").mkdir()
    # the README's server command, verbatim, with a PATH that does not hold the venv (a shell without activation)
    venv_bin = os.path.dirname(sys.executable)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PATH": path, "TMPDIR": str(root / "tmp")}
    env.pop("VIRTUAL_ENV", None)
    conf = f"--conf overrides '{json.dumps(overrides)}'"
    proc = subprocess.Popen(
        ["make", "-s", "serve", f"STUDIES={studies}", f"PORT={port}", f"CONF={conf}"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # make, its shell and the server form one process group, stopped together
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("server exited:\n" + open(root / "server.log").read()[-4000:])
            try:
                if requests.get(url + "/info/", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        else:
            raise RuntimeError("server did not start:\n" + open(root / "server.log").read()[-4000:])
        yield {"url": url, "studies": studies, "root": root, "demo": tiny_demo, "tmp": root / "tmp"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _client(server):
    from monailabel.client import MONAILabelClient

    return MONAILabelClient(server["url"], tmpdir=str(server["root"] / "client"))


def test_info_describes_the_task(server):
    info = _client(server).info()
    task = info["models"]["gem3d_synthesis"]
    assert task["dimension"] == 3 and "informed" in task["config"] and "seed" in task["params"]
    assert "gem3d_synthetic" in info["strategies"]


def test_infer_with_uploaded_mask_returns_image_and_stores_it(server):
    client = _client(server)
    os.makedirs(server["root"] / "client", exist_ok=True)
    base = os.path.dirname(server["demo"])
    item = json.load(open(server["demo"]))["test"][0]
    image_id = client.upload_image(os.path.join(base, item["image"]), image_id="patient_x")["image"]
    client.save_label(image_id, os.path.join(base, item["label"]), tag="final")
    mask = nib.load(os.path.join(base, item["label"]))

    answers = []

    def probe():  # /info must keep answering while a generation runs
        time.sleep(1.0)
        for _ in range(3):
            t = time.time()
            r = requests.get(server["url"] + "/info/", timeout=10)
            answers.append((r.status_code, time.time() - t))
            time.sleep(0.5)

    th = threading.Thread(target=probe)
    th.start()
    t0 = time.time()
    out, params = client.infer(
        "gem3d_synthesis",
        image_id,
        {"seed": 3, "steps": 150, "result_dtype": "uint8"},  # long enough to probe /info during it
        label_in=os.path.join(base, item["label"]),
    )
    elapsed = time.time() - t0
    th.join()
    params = json.loads(params) if isinstance(params, str) else params
    img = nib.load(out)
    assert img.shape == mask.shape and img.get_data_dtype() == np.float32  # an image, whatever the client asks
    np.testing.assert_allclose(img.affine, mask.affine, atol=1e-5)
    assert elapsed > 2.5 and len(answers) == 3
    assert all(code == 200 and dt < 1.0 for code, dt in answers), answers
    new_id = params["synthetic_image_id"]
    assert new_id.startswith("gem3d_patient_x") and "s3" in new_id
    ds = client.datastore()
    assert new_id in ds["objects"] and "final" in ds["objects"][new_id]["labels"]
    # stock Slicer: "Next Sample" with the app's strategy hands out the synthetic image with its mask
    nxt = client.next_sample("gem3d_synthetic", {})
    assert nxt["id"] == new_id
    r = requests.get(server["url"] + "/datastore/image", params={"image": new_id}, timeout=30)
    assert r.status_code == 200 and len(r.content) > 1000


def test_infer_with_saved_label_and_other_informed_image(server):
    client = _client(server)
    ids = sorted(i for i in client.datastore()["objects"] if not i.startswith("gem3d_"))
    out, params = client.infer("gem3d_synthesis", ids[0], {"seed": 1, "steps": 2, "informed": ids[1]})
    params = json.loads(params) if isinstance(params, str) else params
    assert params["informed"]["mode"] == "file" and nib.load(out).shape == (32, 32, 32)


def test_backend_switch_serves_the_3d_backend(server):
    """The same task serves the 3D latent diffusion backend by a parameter; the output keeps the mask's grid."""
    client = _client(server)
    ids = sorted(i for i in client.datastore()["objects"] if not i.startswith("gem3d_"))
    out, params = client.infer("gem3d_synthesis", ids[0], {"seed": 5, "steps": 2, "backend": "medlord"})
    params = json.loads(params) if isinstance(params, str) else params
    assert params["backend"] == "medlord" and params["informed"]["mode"] == "none"
    assert params["synthetic_image_id"].endswith("_s5_medlord")
    img = nib.load(out)
    assert img.shape == (32, 32, 32) and img.get_data_dtype() == np.float32


def test_case_generation_adds_a_new_labelled_image_and_refuses_bad_attributes(server):
    """The joint model's task: attributes as params, the new image and its mask in the datastore, Next Sample
    hands it out; an attribute out of range is a 422 naming it, and nothing is added."""
    client = _client(server)
    ids = sorted(i for i in client.datastore()["objects"] if not i.startswith("gem3d_"))
    assert "gem3d_generate_case" in client.info()["models"]
    time.sleep(1.1)  # datastore timestamps have 1 s resolution: be newer than the images earlier tests added
    out, params = client.infer(
        "gem3d_generate_case", ids[0], {"seed": 7, "steps": 2, "volume_ml": 3, "centre": "0.4,0.6,0.5"}
    )
    params = json.loads(params) if isinstance(params, str) else params
    new_id = params["generated_image_id"]
    assert new_id == "gem3d_case_s7" and params["requested"]["centre_y"] == 0.6
    assert params["conditioned_on"]["volume_ml"] == 3 and "achieved" in params
    img = nib.load(out)
    assert img.shape == (32, 32, 32) and img.get_data_dtype() == np.float32
    ds = client.datastore()
    assert new_id in ds["objects"] and "final" in ds["objects"][new_id]["labels"]
    assert client.next_sample("gem3d_synthetic", {})["id"] == new_id

    before = set(client.datastore()["objects"])
    for bad, match in (({"sphericity": 2}, "sphericity=2 is out of range"), ({"centre": "0.5,x,1"}, "three numbers")):
        r = requests.post(
            f"{server['url']}/infer/gem3d_generate_case",
            params={"image": ids[0]},
            data={"params": json.dumps({"steps": 2, **bad})},
            timeout=60,
        )
        assert r.status_code == 422 and match in r.text, (r.status_code, r.text[:300])
    assert set(client.datastore()["objects"]) == before


@pytest.mark.parametrize(
    "params,label,match",
    [
        ({"seed": "abc"}, None, "must be an integer"),
        ({"informed": "no_such_image"}, None, "not in the datastore"),
        ({"position": 3}, None, r"\[0.0, 1.0\]"),
        ({"backend": "gan"}, None, "must be one of"),
        ({}, "wrong_shape", "differs from image"),
        ({"label": "/etc/passwd"}, None, "uploaded mask file"),
    ],
)
def test_bad_requests_get_4xx_and_server_keeps_serving(server, params, label, match):
    ids = sorted(
        i
        for i in requests.get(server["url"] + "/datastore/?output=all", timeout=10).json()["objects"]
        if not i.startswith("gem3d_")
    )
    files = {}
    if label == "wrong_shape":
        path = server["root"] / "small.nii.gz"
        nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.int16), np.eye(4)), str(path))
        files = {"label": ("small.nii.gz", open(path, "rb"))}
    r = requests.post(
        f"{server['url']}/infer/gem3d_synthesis",
        params={"image": ids[0]},
        data={"params": json.dumps({"steps": 2, **params})},
        files=files,
        timeout=120,
    )
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    assert __import__("re").search(match, r.text), r.text[:500]
    assert requests.get(server["url"] + "/info/", timeout=10).status_code == 200


def test_bad_upload_and_bad_params_get_422_and_no_working_files_stay(server):
    ids = sorted(
        i
        for i in requests.get(server["url"] + "/datastore/?output=all", timeout=10).json()["objects"]
        if not i.startswith("gem3d_")
    )
    url = f"{server['url']}/infer/gem3d_synthesis"
    bad = server["root"] / "notes.nii.gz"
    bad.write_bytes(b"this is a text file, not NIfTI")

    def post_mask(name, path):
        files = {"label": (name, open(path, "rb"))}
        data = {"params": json.dumps({"steps": 2})}
        return requests.post(url, params={"image": ids[0]}, data=data, files=files, timeout=120)

    r = post_mask("my_mask.nii.gz", bad)
    assert r.status_code == 422 and "my_mask.nii.gz" in r.text and "not a readable NIfTI" in r.text, r.text
    assert str(server["tmp"]) not in r.text  # the upload is named, not the server's temporary copy
    r = requests.post(url, params={"image": ids[0]}, data={"params": "{steps: 2"}, timeout=60)
    assert r.status_code == 422 and "not a JSON object" in r.text, r.text
    mask = os.path.join(server["studies"], "labels", "final", f"{ids[0]}.nii.gz")
    r = post_mask("mask.nii.gz", mask)
    assert r.status_code == 200, r.text[:500]

    # the uploads of all three requests and the task's output folder are removed once each request has ended
    def leftovers():  # upload copies (tmp*.nii.gz) and the task's output folders (gem3d_*)
        names = os.listdir(server["tmp"])
        return [n for n in names if n.startswith("gem3d_") or (n.startswith("tmp") and ".nii" in n)]

    deadline = time.time() + 20
    while time.time() < deadline and leftovers():
        time.sleep(0.5)
    assert not leftovers(), os.listdir(server["tmp"])


def test_request_without_any_mask_and_path_as_image_are_refused(server):
    # an image without a saved label, and no upload
    path = server["root"] / "nolabel.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 32), np.float32), np.eye(4)), str(path))
    image_id = _client(server).upload_image(str(path), image_id="nolabel")["image"]
    r = requests.post(
        f"{server['url']}/infer/gem3d_synthesis", params={"image": image_id}, data={"params": "{}"}, timeout=60
    )
    assert r.status_code == 422 and "no mask" in r.text
    r = requests.post(
        f"{server['url']}/infer/gem3d_synthesis", params={"image": str(path)}, data={"params": "{}"}, timeout=60
    )
    assert r.status_code == 422 and "not an image id" in r.text


def test_batch_enhancement_runs_in_background_with_progress(server):
    r = requests.post(
        f"{server['url']}/batch/infer/gem3d_synthesis",
        params={"images": "all"},
        json={"repeats": 1, "steps": 2, "seed": 100},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    deadline = time.time() + 300
    status = {}
    while time.time() < deadline:
        status = requests.get(f"{server['url']}/batch/infer/", timeout=10).json()
        if status.get("status") in ("DONE", "ERROR"):
            break
        time.sleep(2)
    assert status.get("status") == "DONE", status
    assert any("gem3d batch:" in line for line in status.get("details", []))
    # the batch runs in a subprocess; the server reloads its datastore from disk when the task ends (its file
    # watcher alone can miss the last write), a moment after the DONE status
    deadline, count = time.time() + 30, 0
    while time.time() < deadline:
        objects = requests.get(server["url"] + "/datastore/?output=all", timeout=10).json()["objects"]
        count = sum(1 for i in objects if i.startswith("gem3d_") and i.endswith("_s100"))
        if count >= 2:
            break
        time.sleep(1)
    assert count >= 2, objects
    new = [v for i, v in objects.items() if i.startswith("gem3d_") and i.endswith("_s100")]
    assert all("gem3d" in v["image"]["info"] for v in new), new  # the records the subprocess wrote survive


def test_monailabel_internals_the_app_patches_are_still_there():
    """The two hooks of lib/internals.py reach into MONAI Label: fail here, loudly, if an upgrade moves them."""
    import inspect

    if APP not in sys.path:
        sys.path.insert(0, APP)
    from lib.internals import install_batch_reload, install_threaded_infer_route
    from monailabel.datastore.local import LocalDatastore
    from monailabel.utils.async_tasks import task as task_module

    assert install_threaded_infer_route(), "MONAI Label's POST /infer/{model} route was not found"
    assert list(inspect.signature(task_module.run_background_task).parameters)[:4] == [
        "request",
        "method",
        "callback",
        "debug",
    ]
    assert "run_background_task(request, method)" in inspect.getsource(task_module)  # looked up in its module
    assert install_batch_reload(lambda: None) and task_module.run_background_task.gem3d_reload
    assert callable(getattr(LocalDatastore, "_init_from_datastore_file", None)) and callable(LocalDatastore.refresh)
