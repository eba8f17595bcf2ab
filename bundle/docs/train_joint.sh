#!/usr/bin/env bash
# The joint image + mask model (slice-based LDM with tumour attributes), trained and measured as shipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
B="$PY -m monai.bundle run --config_file"
# 1. its training set: 192 + 8 more demo patients from the same generator (seed 1, not the demo's seed 0)
$B bundle/configs/prepare_demo.json --dataset_dir bundle/data/demo_joint --demo_num_train 192 --demo_num_test 8 \
  --demo_seed 1 --demo_previews 2
# 2. the joint slice autoencoder, started from the shipped image autoencoder
$B "['bundle/configs/inference.json','bundle/configs/train_autoencoder.json','bundle/configs/train_joint_autoencoder.json']" \
  --max_epochs 12 --samples_per_epoch 3200
# 3. the stacked-slice UNet on the tumour vector (writes joint_latent_scale.json and joint_attributes.json too)
$B "['bundle/configs/inference.json','bundle/configs/train_diffusion.json','bundle/configs/joint_unet.json']"
# 3b. the spatial prior (bundle 0.10.0): the shipped UNet is the vector-only UNet of step 3 as it was trained before
#     0.10.0 (AttributeUNet, no prior channel) fine-tuned with one more input channel, a Gaussian blob at the requested
#     tumour place (SpatialAttributeUNet), the new channel starting at zero; 30 epochs, then resumed to 60 (the
#     resumed run's best validation, epoch 50, was kept). Step 3 as it reads now trains the spatial UNet from scratch.
cp bundle/models/joint_unet.pt /tmp/joint_unet_vector_only.pt
$B "['bundle/configs/inference.json','bundle/configs/train_diffusion.json','bundle/configs/joint_unet.json']" \
  --init_weights /tmp/joint_unet_vector_only.pt --run_dir bundle/runs/joint_spatial --max_epochs 30 --lr 0.0002 --val_interval 5
$B "['bundle/configs/inference.json','bundle/configs/train_diffusion.json','bundle/configs/joint_unet.json']" \
  --init_weights /tmp/joint_unet_vector_only.pt --run_dir bundle/runs/joint_spatial --max_epochs 60 --lr 0.0002 --val_interval 5
# 4. measurements (BENCHMARKS.md) and a few cases with the GEM-3D hand-off
$B "['bundle/configs/inference.json','bundle/configs/benchmark_joint.json']"
$B "['bundle/configs/inference.json','bundle/configs/generate_cases.json']" --num_cases 4 --tumour_volume_ml 20 \
  --centre "[0.3,0.6,0.5]" --gem3d_handoff true
