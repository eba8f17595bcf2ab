#!/usr/bin/env bash
# Diffusion pretraining with anatomical guidance for segmentation: the coordinate regressor and the study as measured
# in BENCHMARKS.md ("Pretraining the segmenter").
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
B="$PY -m monai.bundle run --config_file"
# 1. the demo set with every patient's MNI coordinate map (the same 32 + 8 patients as bundle/data/demo)
$B bundle/configs/prepare_demo.json --dataset_dir bundle/data/demo_coords --demo_coordinates true
# 2. the coordinate regressor (coordinates for volumes without maps; its error in mm on the 8 test patients)
$B "['bundle/configs/inference.json','bundle/configs/pretrain_segmenter.json','bundle/configs/train_coordinates.json']"
# 3. gem3d's synthetic volumes for the larger pretraining corpus: each demo training mask resampled once
$B "['bundle/configs/inference.json','bundle/configs/enhance.json']" --repeats 1 --output_dir bundle/eval/enhanced_1x
# 4. the study: four backbones pretrained, then scratch / each backbone x frozen / fine-tuned x 10% / 100% labels x 3 seeds
$B "['bundle/configs/inference.json','bundle/configs/train_segmenter.json','bundle/configs/pretrain_study.json']" \
  --max_epochs 16 --val_interval 16
# 5. ten times the pretraining budget (BENCHMARKS "Ten times the pretraining budget"): restorative, plain and guided diffusion, frozen probe and fine-tuned, 10% labels
$B "['bundle/configs/inference.json','bundle/configs/train_segmenter.json','bundle/configs/pretrain_study.json']" \
  --max_epochs 16 --val_interval 16 --pretrain_dir bundle/eval/pretraining_long --pretrain_epochs 200 \
  --study_protocols "['frozen', 'finetune']" --label_fractions "[0.1]" \
  --pretrain_variants '{"restorative": {"pretext": "restorative"}, "diffusion": {"pretext": "diffusion"}, "diffusion_coordinates": {"pretext": "diffusion_coordinates"}}'
# 6. the wider backbone (16 filters) at 5x and 10x the pretraining (restorative, plain and guided diffusion), frozen
#    probe, 10% labels, five seeds (BENCHMARKS "A wider backbone")
VARIANTS='{"restorative": {"pretext": "restorative"}, "diffusion": {"pretext": "diffusion"}, "diffusion_coordinates": {"pretext": "diffusion_coordinates"}}'
for RUN in "pretraining_wide_long 100" "pretraining_wide_10x 200"; do
  read -r DIR EPOCHS <<< "$RUN"
  $B "['bundle/configs/inference.json','bundle/configs/train_segmenter.json','bundle/configs/pretrain_study.json']" \
    --max_epochs 16 --val_interval 16 --pretrain_dir "bundle/eval/$DIR" --pretrain_epochs "$EPOCHS" --segmenter_init_filters 16 \
    --study_protocols "['frozen']" --label_fractions "[0.1]" --study_seeds "[0, 1, 2, 3, 4]" --pretrain_variants "$VARIANTS"
done
