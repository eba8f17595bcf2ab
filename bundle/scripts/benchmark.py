"""Speed and memory of synthesis: wall time per volume, UNet forwards, FLOPs per forward, FLOP/s, peak memory,
and the time split between denoising, decoding and I/O; for several volume sizes and sampler settings.

Prints a table and writes JSON. Figures, not assertions: this is a benchmark, not a test.
"""

from __future__ import annotations

import copy
import logging
import os
import resource
import tempfile
import time
from dataclasses import asdict

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .data.demo_phantom import make_patient
from .data.model_space import ModelGrid
from .io import save_json, save_nifti
from .precision import cpu_features, cpu_summary
from .sampling.results import write_result

logger = logging.getLogger(__name__)


class _CountingNet(torch.nn.Module):
    """Wraps the window UNet to count forwards and time them."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls, self.seconds = net, 0, 0.0

    def forward(self, x, t):
        start = time.perf_counter()
        out = self.net(x, t)
        self.seconds += time.perf_counter() - start
        self.calls += x.shape[0]  # one forward per window (a wave batch holds several)
        return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB; Linux reports ru_maxrss in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def flops_per_window_forward(net, channels: int, window: int, latent: int) -> int:
    x = torch.zeros(1, channels, window, latent, latent)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net(x, torch.tensor([500]))
    return int(counter.get_total_flops())


def forward_variants(net, channels: int, window: int, latent: int, variants, repeats: int = 10) -> dict:
    """Milliseconds per window-UNet forward (a wave of 2 windows) for each of ``variants``: ``fp32``, ``bf16``
    (autocast), ``channels_last`` (fp32 weights in channels-last layout) and ``compile`` (``torch.compile``; its
    compile time is reported too). The output's relative error against fp32 is reported for each."""
    device = next(net.parameters()).device
    x, t = torch.randn(2, channels, window, latent, latent, device=device), torch.tensor([500], device=device)
    out = {}
    with torch.inference_mode():
        ref = net(x, t).float()
    for name in variants:
        fn, extra = net, {}
        if name == "channels_last":
            fn = copy.deepcopy(net).to(memory_format=torch.channels_last)
        elif name == "compile":
            start = time.perf_counter()
            fn = torch.compile(copy.deepcopy(net))
            with torch.inference_mode():
                fn(x, t)
            extra["compile_s"] = round(time.perf_counter() - start, 1)
        elif name not in ("fp32", "bf16"):
            raise ValueError(f"unknown forward variant {name!r}")

        def call():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=name == "bf16"):
                return fn(x, t).float()

        with torch.inference_mode():
            err = float((call() - ref).norm() / ref.norm().clamp_min(1e-12))
            for _ in range(2):
                call()
            start = time.perf_counter()
            for _ in range(repeats):
                call()
        ms = (time.perf_counter() - start) / repeats * 1000
        out[name] = {"ms_per_forward": round(ms, 1), "relative_error_vs_fp32": round(err, 5), **extra}
        logger.info(f"forward {name}: {out[name]}")
    return out


def time_peer_ldm(unet, autoencoder, output_size, steps: int, precision: str = "fp32", factor: int = 4) -> dict:
    """One UNet forward and one decode of a whole-volume 3D latent diffusion model (random weights, declared in
    benchmark.json after the model zoo's ``brats_mri_generative_diffusion``) at ``output_size``, projected to its
    ``steps``-step sampler. ``factor``: the autoencoder's downsampling per axis."""
    device = next(unet.parameters()).device
    latent = [unet.in_channels, *(int(s) // factor for s in output_size)]
    z = torch.randn(1, *latent, device=device)
    t = torch.tensor([500], device=device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        unet(z, t)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        start = time.perf_counter()
        unet(z, t)
        forward_s = time.perf_counter() - start
        start = time.perf_counter()
        image = autoencoder.decode(z)
        decode_s = time.perf_counter() - start
    return {
        "output_size": list(image.shape[2:]),
        "latent": latent,
        "unet_params_m": round(sum(p.numel() for p in unet.parameters()) / 1e6, 1),
        "autoencoder_params_m": round(sum(p.numel() for p in autoencoder.parameters()) / 1e6, 1),
        "precision": precision,
        "unet_tflops_per_forward": round(counter.get_total_flops() / 1e12, 2),
        "unet_forward_s": round(forward_s, 2),
        "decode_s": round(decode_s, 2),
        "steps": int(steps),
        "projected_s_per_volume": round(steps * forward_s + decode_s, 1),
    }


def run_benchmark(
    synth,
    sizes,
    settings: list[dict],
    output_file: str,
    seed: int = 0,
    native: bool = False,
    variants=(),
    peer: dict | None = None,
):
    """``sizes``: [[H, W, Z], ...]; ``settings``: synthesis overrides per row (``Synthesizer.variant``).

    ``native``: run the networks at each volume's own in-plane size instead of the trained model size (the
    networks are fully convolutional), to measure cost and memory at 128^2 or 256^2; quality is then meaningless.
    ``peer``: ``{"unet", "autoencoder", "size", "steps"}``, a whole-volume 3D LDM timed in the same run
    (:func:`time_peer_ldm`); its projected seconds per volume are compared with gem3d's rows of the same size.
    """
    model = synth.model
    rows = []
    logger.info(f"CPU: {cpu_summary()}")
    counting = _CountingNet(model.window_net)
    synth.sampler.progress = False
    trained = synth.cfg["grid"]
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            # the latent must survive the UNet's two downsamplings: in-plane sizes are multiples of 16
            patient = make_patient(tuple(size), seed=seed + 12345)
            if native:  # the patient's own voxel size, so that the model space does not resample it
                side = int(-(-max(size[:2]) // 16) * 16)
                spacing = np.abs(np.diag(patient["affine"])[:3])
                synth.cfg["grid"] = ModelGrid(side, spacing, trained.slices)
            side = synth.cfg["grid"].size
            latent = model.latent_shape(side)[-1]
            flops = flops_per_window_forward(
                model.window_net, model.window_net.unet.in_channels, synth.settings.window, latent
            )
            mask_path = os.path.join(tmp, f"mask_{'x'.join(map(str, size))}.nii.gz")
            save_nifti(patient["label"], patient["affine"], mask_path)
            for s in settings:
                counting.calls, counting.seconds = 0, 0.0
                decode_s = [0.0]
                decode = model.decode

                def timed_decode(lat, *args, _decode=decode):
                    t = time.perf_counter()
                    out = _decode(lat, *args)
                    decode_s[0] += time.perf_counter() - t
                    return out

                model.decode = timed_decode
                with synth.variant(s, counting):
                    cfg = {**asdict(synth.settings), "solver": synth.solver}
                    start = time.perf_counter()
                    result = synth.synthesize(mask_path, seed, "bench", informed={"mode": "ig"})
                    t_io = time.perf_counter()
                    write_result(result, os.path.join(tmp, "out"), f"b_{len(rows)}", overwrite=True)
                    io_s = time.perf_counter() - t_io
                    total = time.perf_counter() - start
                model.decode = decode
                row = {
                    "size": list(size),
                    "model_in_plane": side,
                    **{k: cfg[k] for k in ("solver", "steps", "eta", "batch_waves", "precision")},
                    "seconds_per_volume": round(total, 2),
                    "window_forwards": counting.calls,
                    "gflops_per_window_forward": round(flops / 1e9, 2),
                    "achieved_gflops_per_s": round(flops * counting.calls / max(counting.seconds, 1e-9) / 1e9, 1),
                    "denoise_s": round(counting.seconds, 2),
                    "decode_s": round(decode_s[0], 2),
                    "io_s": round(io_s, 2),
                    "peak_rss_mb": round(peak_rss_mb(), 0),
                }
                rows.append(row)
                logger.info(" | ".join(f"{k}={v}" for k, v in row.items()))
    synth.cfg["grid"] = trained
    net = model.window_net
    latent = model.latent_shape(trained.size)[-1]
    forwards = forward_variants(net, net.unet.in_channels, synth.settings.window, latent, variants) if variants else {}
    peer_row = None
    if peer:
        peer_row = time_peer_ldm(
            peer["unet"], peer["autoencoder"], peer["size"], peer["steps"], synth.settings.precision
        )
        same = [r for r in rows if r["size"] == list(peer["size"])]
        for r in same:
            r["peer_ratio"] = round(peer_row["projected_s_per_volume"] / r["seconds_per_volume"], 1)
        logger.info(" | ".join(f"{k}={v}" for k, v in {"peer": "3D LDM", **peer_row}.items()))
        for r in same:
            logger.info(
                f"gem3d {r['solver']} {r['steps']} steps {r['precision']}: {r['seconds_per_volume']} s/volume, "
                f"peer {peer_row['projected_s_per_volume']} s: {r['peer_ratio']}x faster",
            )
    save_json(
        {
            "device": str(model.device),
            "cpu": cpu_features(),
            "torch_threads": torch.get_num_threads(),
            "rows": rows,
            "forwards": forwards,
            "peer_3d_ldm": peer_row,
        },
        output_file,
        overwrite=True,
    )
    return rows


def volume_cost(synth, backend: str, size, output_dir: str, seed: int = 0, steps: int | None = None) -> dict:
    """Seconds and peak resident memory of one synthesis at ``size`` with the networks run at that size (the
    patient's own voxel size, in-plane padded to a multiple of 16): one size per process, so that the peak belongs
    to it. Writes ``<output_dir>/<backend>_<X>x<Y>x<Z>.json``; quality is not the point here."""
    patient = make_patient(tuple(size), seed=seed + 12345)
    side = int(-(-max(size[:2]) // 16) * 16)
    synth.cfg["grid"] = ModelGrid(side, np.abs(np.diag(patient["affine"])[:3]), synth.cfg["grid"].slices)
    synth.sampler.progress = False
    base_rss = peak_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        mask_path = os.path.join(tmp, "mask.nii.gz")
        save_nifti(patient["label"], patient["affine"], mask_path)
        with synth.variant({"steps": steps} if steps else {}):
            start = time.perf_counter()
            result = synth.synthesize(mask_path, seed, "bench", informed={"mode": "ig"})
            seconds = time.perf_counter() - start
            used = {"steps": synth.settings.steps, "precision": synth.settings.precision}
    row = {
        "backend": backend,
        "size": list(size),
        "model_in_plane": side,
        **used,
        "seconds_per_volume": round(seconds, 2),
        "peak_rss_mb": round(peak_rss_mb(), 0),
        "rss_before_mb": round(base_rss, 0),
        "cpu": cpu_summary(),
        "torch_threads": torch.get_num_threads(),
        "record_model_space": result["record"]["model_space"],
    }
    logger.info(" | ".join(f"{k}={v}" for k, v in row.items() if k != "record_model_space"))
    name = f"{backend}_{'x'.join(str(int(s)) for s in size)}.json"
    save_json(row, os.path.join(output_dir, name), overwrite=True)
    return row


def unet_flops(unet, latent_shape) -> float:
    """FLOPs of one forward of a 3D latent UNet at ``latent_shape`` (C, x, y, z), counted on the meta device (no
    memory, no compute), so that sizes this machine cannot run are still counted."""
    import copy

    net = copy.deepcopy(unet).to("meta")
    x = torch.zeros((1, *latent_shape), device="meta")
    with FlopCounterMode(display=False) as counter:
        net(x, torch.zeros(1, device="meta", dtype=torch.long))
    return float(counter.get_total_flops())
