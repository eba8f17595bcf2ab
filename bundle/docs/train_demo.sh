#!/usr/bin/env bash
# Trains the shipped weights on the demo dataset, stage by stage (run from the repository root).
# The window and informed-slice stages only need the autoencoder, so they run side by side (one thread each).
set -euo pipefail
PY=${PY:-.venv/bin/python}
RUN="$PY -m monai.bundle run --config_file"
C=bundle/configs
$RUN $C/prepare_demo.json
$RUN "['$C/inference.json','$C/train_autoencoder.json']"
OMP_NUM_THREADS=1 $RUN "['$C/inference.json','$C/train_diffusion.json','$C/train_window.json']" &
OMP_NUM_THREADS=1 $RUN "['$C/inference.json','$C/train_diffusion.json','$C/train_informed.json']" &
wait
$RUN "['$C/inference.json','$C/train_diffusion.json','$C/train_window.json','$C/train_volume.json']"
