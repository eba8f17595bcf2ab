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
# volumetric tuning continued from those weights (10 more epochs); the last epoch's EMA weights were volume.pt until 0.11.0
$RUN "['$C/inference.json','$C/train_diffusion.json','$C/train_window.json','$C/train_volume.json']" \
    --stage volume_long --stage1_weights bundle/models/volume.pt --max_epochs 10
$PY -c "import torch; torch.save(torch.load('bundle/runs/volume_long/checkpoint_final.pt', weights_only=False)['ema'], 'bundle/models/volume.pt')"
# ...and 3,000 more with the through-plane loss (bundle 0.12.0; BENCHMARKS "Sixth remedy"): the shipped stage 2
$RUN "['$C/inference.json','$C/train_diffusion.json','$C/train_window.json','$C/train_volume.json']" \
    --stage volume_tp4 --stage1_weights bundle/models/volume.pt --max_epochs 6 --through_plane_weight 4.0
$PY -c "import torch; torch.save(torch.load('bundle/runs/volume_tp4/checkpoint_final.pt', weights_only=False)['ema'], 'bundle/models/volume.pt')"
# decoder fine-tuning, four rounds (each a cosine learning-rate cycle from the previous round's weights; later rounds
# weight SSIM more); round 2 was stopped after 7 of its 24 epochs
$RUN "['$C/inference.json','$C/train_autoencoder.json','$C/finetune_decoder.json']"
$RUN "['$C/inference.json','$C/train_autoencoder.json','$C/finetune_decoder.json']" \
    --stage_dir bundle/runs/autoencoder_decoder_r2 --max_epochs 24 --ssim_weight 0.5
$RUN "['$C/inference.json','$C/train_autoencoder.json','$C/finetune_decoder.json']" \
    --stage_dir bundle/runs/autoencoder_decoder_r3 --max_epochs 20 --ssim_weight 0.5 --lr 0.0002
$RUN "['$C/inference.json','$C/train_autoencoder.json','$C/finetune_decoder.json']" \
    --stage_dir bundle/runs/autoencoder_decoder_r4 --max_epochs 12 --ssim_weight 1.5 --lr 0.0002
# the Make-A-Volume-style baseline of evaluate.json: the window stages again, mask only, same budget
$RUN "['$C/inference.json','$C/train_diffusion.json','$C/train_window.json','$C/baseline_mask_only.json']"
$RUN "['$C/inference.json','$C/train_diffusion.json','$C/train_window.json','$C/train_volume.json','$C/baseline_mask_only.json']"
# the mask-adherence judge of evaluate.json (SegResNet on the real training set, whole 64^3 volumes)
$RUN "['$C/inference.json','$C/train_segmenter.json']" --seg_patch "[64,64,64]" --seg_patches_per_volume 1 \
    --max_epochs 24 --val_interval 4
# the 3D latent diffusion backend (--backend medlord): 3D autoencoder on 32^3 patches, latent UNet (its first 50
# epochs ran as a separate call with validation every 5 epochs, then resumed to 200), ControlNet on the frozen UNet
# (likewise 30 epochs, resumed to 60, then to 160 with validation every 20)
$RUN "['$C/inference.json','$C/train_autoencoder.json','$C/medlord_autoencoder.json']" --max_epochs 16
$RUN "['$C/inference.json','$C/train_diffusion.json','$C/medlord_unet.json']" --max_epochs 200 --val_interval 10
$RUN "['$C/inference.json','$C/train_diffusion.json','$C/medlord_unet.json','$C/medlord_controlnet.json']" \
    --max_epochs 160 --val_interval 20
# the decoder with cross-slice layers (decoder "volume"): zero-initialised 1D convolutions across slices on the
# frozen 2D autoencoder, 16-slice stacks with per-slice latent noise (0-0.3), best validation PSNR kept
$RUN "['$C/inference.json','$C/train_autoencoder.json','$C/train_volume_decoder.json']" --max_epochs 24
