#!/usr/bin/env bash
# Seconds and peak memory per synthesis, both backends, one process per (backend, size): BENCHMARKS.md's table.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
for backend in medlord gem3d; do
  for size in "[64,64,64]" "[128,128,128]" "[256,256,155]" "[256,256,256]"; do
    $PY -m monai.bundle run --config_file "['bundle/configs/inference.json','bundle/configs/benchmark_volume.json']" \
      --backend "$backend" --bench_size "$size"
  done
done
$PY -m monai.bundle run --config_file "['bundle/configs/inference.json','bundle/configs/benchmark_volume.json']" \
  --run "\$print(scripts.benchmark.unet_flops(@medlord_unet_def, [@medlord_latent_channels, 128, 128, 64]) / 1e12, 'TFLOPs per UNet forward at 512x512x256')"
