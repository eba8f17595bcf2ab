#!/usr/bin/env bash
# Trains the shipped weights on the demo dataset, stage by stage (run from the repository root).
# The window and informed-slice stages only need the autoencoder's encoder, so they run side by side (one thread
# each); the decoder fine-tuning freezes the encoder, so it can run at any time after the autoencoder stage.
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
# decoder fine-tuning, two rounds (each a cosine learning-rate cycle; the second weights SSIM more)
$RUN "['$C/inference.json','$C/train_autoencoder.json','$C/finetune_decoder.json']"
$RUN "['$C/inference.json','$C/train_autoencoder.json','$C/finetune_decoder.json']" \
    --stage_dir bundle/runs/autoencoder_decoder_r2 --max_epochs 24 --ssim_weight 0.5
# the mask-adherence judge of evaluate.json (SegResNet on the real training set)
$RUN "['$C/inference.json','$C/train_segmenter.json']" --max_epochs 48 --val_interval 8
