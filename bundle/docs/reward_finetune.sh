#!/usr/bin/env bash
# Reward fine-tuning of the GEM-3D window model (PPO on the denoising chain) and its measurements, as in
# BENCHMARKS.md ("Reward fine-tuning"). Steps 2 and 5 are long on a CPU: run them in the background.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
B="$PY -m monai.bundle run --config_file"
R="'bundle/configs/inference.json','bundle/configs/reward.json'"
# 1. the critics: volumes of the training masks rolled out once (cached in bundle/runs/reward), then each critic
$B "[$R,'bundle/configs/train_critic.json']" --critic slice
$B "[$R,'bundle/configs/train_critic.json']" --critic planes
$B "[$R,'bundle/configs/train_critic.json']" --critic volume --max_epochs 30 --batch_size 4
# 2. the reward on fixed test masks and seeds before fine-tuning
$B "[$R,'bundle/configs/finetune_reward.json','bundle/configs/evaluate_reward.json']" --window_weights stage2
# 3. PPO as shipped in 0.9.0, before the weight anchor and the held-out keeper existed (both off here): 12 iterations
#    at lr 2e-4, then resumed to 28 at lr 1e-3, clip 5e-4 (resumable; bundle/runs/reward holds the curves and logs)
$B "[$R,'bundle/configs/finetune_reward.json']" --reward_lr 0.0002 --max_epochs 3 --reward_anchor_weight 0 --reward_val_masks 0
$B "[$R,'bundle/configs/finetune_reward.json']" --reward_lr 0.001 --reward_clip_range 0.0005 --max_epochs 7 --reward_anchor_weight 0 --reward_val_masks 0
# 3b. the third run (0.12.0 defaults: anchor 50, 4 held-out masks; BENCHMARKS "Third run"): nothing beat stage 2, so nothing was written
$B "[$R,'bundle/configs/finetune_reward.json']" --stage reward_anchor --reward_weights_file volume_reward_anchor.pt \
  --reward_weights "{'slice': 0.0, 'planes': 1.0, 'volume': 0.0}" --reward_rollout_informed "[{'mode': 'true'}, {'mode': 'ic'}]" \
  --reward_lr 0.001 --reward_clip_range 0.0005 --reward_masks_per_iteration 4 --reward_samples_per_mask 4 \
  --reward_iterations_per_epoch 2 --max_epochs 4
# 3c. the fourth run (0.13.0): the same reward and modes, one output gain per pseudo-3D layer as the policy (18 numbers;
#     BENCHMARKS "Fourth run"), lr 1e-2, anchor 10, 10 iterations; then its fixed-seed rewards and evaluation rows
$B "[$R,'bundle/configs/finetune_reward.json']" --stage reward_gains --reward_trainable gains --reward_weights_file volume_reward_gains.pt \
  --reward_weights "{'slice': 0.0, 'planes': 1.0, 'volume': 0.0}" --reward_rollout_informed "[{'mode': 'true'}, {'mode': 'ic'}]" \
  --reward_lr 0.01 --reward_clip_range 0.0005 --reward_anchor_weight 10 --reward_masks_per_iteration 4 --reward_samples_per_mask 4 \
  --reward_iterations_per_epoch 2 --max_epochs 5
for W in "--window_weights stage2 --reward_eval_file bundle/eval/reward/gains_stage2.json" \
         "--window_file bundle/models/volume_reward_gains.pt --reward_eval_file bundle/eval/reward/gains_tuned.json"; do
  $B "[$R,'bundle/configs/finetune_reward.json','bundle/configs/evaluate_reward.json']" $W \
    --reward_weights "{'slice': 0.0, 'planes': 1.0, 'volume': 0.0}" --reward_rollout_informed "[{'mode': 'true'}, {'mode': 'ic'}]"
done
$B "['bundle/configs/inference.json','bundle/configs/evaluate.json']" --eval_limit 8 --eval_repeats 2 --eval_dir bundle/eval/reward_gains_eval \
  --eval_networks#reward#file bundle/models/volume_reward_gains.pt \
  --eval_rows "{'gains_true': {'informed': {'mode': 'true'}, 'network': 'reward'}, 'gains_ic': {'informed': {'mode': 'ic'}, 'network': 'reward'}}"
# 3d. critics hardened against the gain directions (0.14.0; BENCHMARKS "Hardened critics"): negatives at pseudo-3D gains
#     1, 1.5, 2 (one-sided) and 0.5, 1, 1.5, 2 (two-sided), written to runs/ (the shipped critics stay); then the
#     reward along the gains under each pair, with the real test volumes' reward as the reference
for PAIR in "critics_hardened [1.0, 1.5, 2.0] hardened_sweep" "critics_two_sided [0.5, 1.0, 1.5, 2.0] two_sided_sweep"; do
  DIR=${PAIR%% *}; NAME=${PAIR##* }; GAINS=${PAIR#* }; GAINS=${GAINS% *}  # first word, last word, the list between
  for C in planes slice; do
    $B "[$R,'bundle/configs/train_critic.json']" --critic $C --critic_fake_gains "$GAINS" --critic_dir "bundle/runs/$DIR" \
      --stage_dir "bundle/runs/$DIR/critic_$C"
  done
  for G in 0.0 0.5 0.75 1.0 1.25 1.5 2.0; do
    $B "[$R,'bundle/configs/finetune_reward.json','bundle/configs/evaluate_reward.json']" --window_weights stage2 --reward_eval_gain $G \
      --critic_files#slice "bundle/runs/$DIR/critic_slice.pt" --critic_files#planes "bundle/runs/$DIR/critic_planes.pt" \
      --reward_rollout_informed "[{'mode': 'true'}, {'mode': 'ic'}]" --reward_eval_file "bundle/eval/reward/${NAME}_$G.json"
  done
done
# 3e. adversarial critics (0.16.0; BENCHMARKS "Adversarial critics"): the fourth run's policy, reward, modes and batch,
#     the planes critic retrained on every iteration's rollouts (4 discriminator steps), the held-out check scored by
#     the fixed two-sided critics of 3d; the weights it keeps go to models/ (moved to runs/ afterwards: not shipped);
#     then the reward along the gains under the critic the run ended with and under the shipped one
$B "[$R,'bundle/configs/finetune_reward.json']" --stage reward_adversarial --reward_trainable gains --reward_weights_file volume_reward_adversarial.pt \
  --reward_weights "{'slice': 0.0, 'planes': 1.0, 'volume': 0.0}" --reward_rollout_informed "[{'mode': 'true'}, {'mode': 'ic'}]" \
  --reward_lr 0.01 --reward_clip_range 0.0005 --reward_anchor_weight 10 --reward_masks_per_iteration 4 --reward_samples_per_mask 4 \
  --reward_iterations_per_epoch 2 --max_epochs 5 --reward_adversarial_steps 4 \
  --reward_keeper_critic_files "{'slice': 'bundle/runs/critics_two_sided/critic_slice.pt', 'planes': 'bundle/runs/critics_two_sided/critic_planes.pt', 'volume': 'bundle/models/critic_volume.pt'}"
mv bundle/models/volume_reward_adversarial.pt bundle/runs/reward_adversarial/
for G in 1.0 1.5 2.0; do
  for CRITIC in "adversarial bundle/runs/reward_adversarial/critic_planes.pt" "shipped016 bundle/models/critic_planes.pt"; do
    $B "[$R,'bundle/configs/finetune_reward.json','bundle/configs/evaluate_reward.json']" --window_weights stage2 --reward_eval_gain $G \
      --reward_weights "{'slice': 0.0, 'planes': 1.0, 'volume': 0.0}" --reward_rollout_informed "[{'mode': 'true'}, {'mode': 'ic'}]" \
      --critic_files#planes "${CRITIC#* }" --reward_eval_file "bundle/eval/reward/${CRITIC%% *}_gain_$G.json"
  done
done
# 3f. reward backpropagation (0.18.0; BENCHMARKS "Reward backpropagation"): finetune_reward_direct.json on top of
#     finetune_reward.json, pseudo-3D layers, 4 masks x 1 rollout per iteration, anchor 50, planes critic. Run 1: true and
#     IC in turn, the shipped critic retrained 4 steps per iteration; run 2: IC only, the shipped critic fixed; run 3:
#     IC only, a planes critic trained afresh on IC rollouts of today's sampler, fixed; run 4: run 3 with that critic
#     retrained 2 steps per iteration (run 1 was stopped after 16 iterations, as here); run 5: run 3 with the fresh slice
#     critic mixed in (slice 0.5 + planes 0.5). Each run's weights are moved to runs/ (none is shipped), then their rows
D="'bundle/configs/finetune_reward.json','bundle/configs/finetune_reward_direct.json'"
P="{'slice': 0.0, 'planes': 1.0, 'volume': 0.0}"
for C in planes slice; do
  $B "[$R,'bundle/configs/train_critic.json']" --critic $C --reward_informed "{'mode': 'ic'}" --critic_dir bundle/runs/critics_ic \
    --stage_dir bundle/runs/critics_ic/critic_$C
done
FRESH="{'slice': 'bundle/models/critic_slice.pt', 'planes': 'bundle/runs/critics_ic/critic_planes.pt', 'volume': 'bundle/models/critic_volume.pt'}"
BOTH="{'slice': 'bundle/runs/critics_ic/critic_slice.pt', 'planes': 'bundle/runs/critics_ic/critic_planes.pt', 'volume': 'bundle/models/critic_volume.pt'}"
COMMON="--reward_anchor_weight 50 --reward_masks_per_iteration 4 --reward_samples_per_mask 1"
# stage 2 and a tuned window model side by side, with IC and with the true informed slice (8 test masks x 2):
# tuned_rows FOLDER SEEDS WEIGHTS writes bundle/eval/seed_spread/FOLDER (rows already there are only measured)
tuned_rows() {
  $B "['bundle/configs/inference.json','bundle/configs/evaluate.json']" --eval_limit 8 --eval_repeats 2 --eval_seeds "$2" \
    --eval_dir bundle/eval/seed_spread/$1 --eval_networks#reward#file $3 \
    --eval_rows "{'gem3d_ic': {'informed': {'mode': 'ic'}}, 'gem3d_true': {'informed': {'mode': 'true'}}, 'tuned_ic': {'informed': {'mode': 'ic'}, 'network': 'reward'}, 'tuned_true': {'informed': {'mode': 'true'}, 'network': 'reward'}}"
}
# kept NAME: a run's kept weights moved to bundle/runs/reward_NAME and measured against stage 2 (seed 0); the stage-2
# rows are generated once, in bound1's folder (step 3g), and copied for every later run
kept() {
  mv bundle/models/volume_reward_direct.pt bundle/runs/reward_$1/
  mkdir -p bundle/eval/seed_spread/$1
  [ "$1" = bound1 ] || cp -rn bundle/eval/seed_spread/bound1/gem3d_* bundle/eval/seed_spread/$1/
  tuned_rows $1 "[0]" bundle/runs/reward_$1/volume_reward_direct.pt
}
for RUN in "direct1|--reward_weights \"$P\" --reward_rollout_informed \"[{'mode': 'true'}, {'mode': 'ic'}]\" --reward_lr 0.0002 --reward_adversarial_steps 4 --reward_iterations_per_epoch 8 --max_epochs 2" \
           "direct2|--reward_weights \"$P\" --reward_rollout_informed \"[{'mode': 'ic'}]\" --reward_lr 0.0001 --reward_iterations_per_epoch 4 --max_epochs 4" \
           "direct3|--reward_weights \"$P\" --reward_rollout_informed \"[{'mode': 'ic'}]\" --reward_lr 0.0001 --reward_iterations_per_epoch 4 --max_epochs 4 --critic_files \"$FRESH\"" \
           "direct4|--reward_weights \"$P\" --reward_rollout_informed \"[{'mode': 'ic'}]\" --reward_lr 0.0001 --reward_iterations_per_epoch 4 --max_epochs 4 --critic_files \"$FRESH\" --reward_adversarial_steps 2 --reward_critic_lr 0.00005 --reward_val_masks 0" \
           "direct5|--reward_rollout_informed \"[{'mode': 'ic'}]\" --reward_lr 0.0001 --reward_iterations_per_epoch 4 --max_epochs 4 --critic_files \"$BOTH\" --reward_weights \"{'slice': 0.5, 'planes': 0.5, 'volume': 0.0}\""; do
  NAME=${RUN%%|*}
  eval $B "\"[$R,$D]\"" --stage reward_$NAME $COMMON ${RUN#*|}
  mv bundle/models/volume_reward_direct.pt bundle/runs/reward_$NAME/
  tuned_rows $NAME "[0]" bundle/runs/reward_$NAME/volume_reward_direct.pt
done
# run 2 over three seeds (its seed-0 rows reused when copied to direct2_seeds/seed0), and the paired differences
tuned_rows direct2_seeds "[0, 1, 2]" bundle/runs/reward_direct2/volume_reward_direct.pt
$PY bundle/docs/paired_seeds.py direct2_seeds tuned_true direct2_seeds gem3d_true
$PY bundle/docs/paired_seeds.py direct2_seeds tuned_ic direct2_seeds gem3d_ic
for W in "--window_weights stage2 --reward_eval_file bundle/eval/reward/direct2_stage2.json" \
         "--window_file bundle/runs/reward_direct2/volume_reward_direct.pt --reward_eval_file bundle/eval/reward/direct2_tuned.json"; do
  $B "[$R,'bundle/configs/finetune_reward.json','bundle/configs/evaluate_reward.json']" $W \
    --reward_weights "{'slice': 0.0, 'planes': 1.0, 'volume': 0.0}" --reward_rollout_informed "[{'mode': 'ic'}]"
done
# 3g. the functional bound (0.19.0; BENCHMARKS "Functional bound"): run 2 of 3f (IC rollouts, shipped planes critic
#     fixed, lr 1e-4, anchor 50) with --reward_function_weight W (the squared change of the prediction from stage 2's on 8
#     random recorded steps of each rollout): bound1 W = 1000 for 16 iterations, bound2 W = 3000 for 8; then their rows
#     (seed 0, 8 test masks x 2; the stage-2 rows are generated once, in bound1's folder, and copied for bound2)
for RUN in "bound1|1000|4" "bound2|3000|2"; do
  IFS="|" read -r NAME W EPOCHS <<< "$RUN"
  eval $B "\"[$R,$D]\"" --stage reward_$NAME $COMMON --reward_weights "\"$P\"" --reward_rollout_informed "\"[{'mode': 'ic'}]\"" \
    --reward_lr 0.0001 --reward_iterations_per_epoch 4 --max_epochs $EPOCHS --reward_function_weight $W
  kept $NAME
done
$PY bundle/docs/preview_reward_direct.py --base bound1 --runs bound1 bound2 --out preview_reward_bound.png
# 3h. the shipped weights (0.20.0; BENCHMARKS "Shipped: the functional bound's weights"): bound1 of 3g written as
#     models/volume_reward.pt (what --window_weights reward loads); the drift-matched control (bound1 without the bound,
#     W = 0, at lr 3e-5 for 8 iterations) and its rows; bound1 over seeds 0 and 1 (seed 0's rows reused); whose patient
#     the IC volumes resemble; the preview
cp bundle/runs/reward_bound1/volume_reward_direct.pt bundle/models/volume_reward.pt
eval $B "\"[$R,$D]\"" --stage reward_control $COMMON --reward_weights "\"$P\"" --reward_rollout_informed "\"[{'mode': 'ic'}]\"" \
  --reward_lr 0.00003 --reward_iterations_per_epoch 4 --max_epochs 2 --reward_function_weight 0
kept control
mkdir -p bundle/eval/seed_spread/bound1_seeds/seed0
cp -rn bundle/eval/seed_spread/bound1/gem3d_* bundle/eval/seed_spread/bound1/tuned_* bundle/eval/seed_spread/bound1_seeds/seed0/
tuned_rows bound1_seeds "[0, 1]" bundle/runs/reward_bound1/volume_reward_direct.pt
$PY bundle/docs/paired_seeds.py bound1_seeds tuned_true bound1_seeds gem3d_true
$PY bundle/docs/paired_seeds.py bound1_seeds tuned_ic bound1_seeds gem3d_ic
$PY bundle/docs/ic_reference_check.py bundle/eval/seed_spread/bound1 gem3d_ic tuned_ic gem3d_true tuned_true
$PY bundle/docs/preview_reward_direct.py --base bound1 --runs control bound1 --out preview_reward_control.png
cp bundle/runs/reward_control/reward_control_curves.png bundle/docs/images/reward/
# 3i. true-slice rollouts, and feature matching instead of the logit (0.21.0; BENCHMARKS "Feature matching"): truebound
#     is bound1 with the patient's own slice in the rollouts; features1 and features2 train on the slice critic's feature
#     matching (reward_features.json) with IC rollouts at W = 300 and 25; each 8 iterations, then its rows; features2
#     over seeds 0 and 1, shipped as models/volume_reward_ic.pt (--window_weights reward_ic); which rewards agree with
#     the rows' FID; the preview; the grade study with reward_ic
for RUN in "truebound|planes|true|1000|" "features1|slice|ic|300|,'bundle/configs/reward_features.json'" \
           "features2|slice|ic|25|,'bundle/configs/reward_features.json'"; do
  IFS="|" read -r NAME CRITIC MODE W EXTRA <<< "$RUN"
  eval $B "\"[$R,$D$EXTRA]\"" --stage reward_$NAME $COMMON --reward_weights "\"{'$CRITIC': 1.0}\"" \
    --reward_rollout_informed "\"[{'mode': '$MODE'}]\"" --reward_lr 0.0001 --reward_iterations_per_epoch 4 --max_epochs 2 \
    --reward_function_weight $W
  kept $NAME
done
mkdir -p bundle/eval/seed_spread/features2_seeds/seed0 bundle/eval/seed_spread/features2_seeds/seed1
cp -rn bundle/eval/seed_spread/features2/*_* bundle/eval/seed_spread/features2_seeds/seed0/
cp -rn bundle/eval/seed_spread/bound1_seeds/seed1/gem3d_* bundle/eval/seed_spread/features2_seeds/seed1/
tuned_rows features2_seeds "[0, 1]" bundle/runs/reward_features2/volume_reward_direct.pt
$PY bundle/docs/paired_seeds.py features2_seeds tuned_ic features2_seeds gem3d_ic
$PY bundle/docs/paired_seeds.py features2_seeds tuned_true features2_seeds gem3d_true
cp bundle/runs/reward_features2/volume_reward_direct.pt bundle/models/volume_reward_ic.pt
S=bundle/eval/seed_spread
$PY bundle/docs/reward_alignment_check.py $S/bound1 $S/bound1 $S/control $S/bound2 $S/truebound $S/features1 $S/features2
$PY bundle/docs/preview_reward_direct.py --base bound1 --runs bound1 features2 --out preview_reward_features.png
cp bundle/runs/reward_features2/reward_features2_curves.png bundle/docs/images/reward/
$B "['bundle/configs/inference.json','bundle/configs/train_classifier.json','bundle/configs/grade_study.json']" \
  --grade_study_dir bundle/eval/grade_study_reward_ic \
  --grade_networks "{'stage2': None, 'reward_ic': {'network': '%window_unet_def', 'file': '\$scripts.sampling.model.window_weights_file(@model_dir, \\'reward_ic\\')'}}"
# 3j. the 3D backend (0.22.0; BENCHMARKS "Reward fine-tuning of the 3D backend"): reward backpropagation on its ControlNet
#     (finetune_reward_medlord.json) with 4 rollouts an iteration and anchor 50: medlord1 and medlord2 on feature matching
#     (slice + planes) at lr 1e-4 and 1e-3, W = 25; medlord3 on the planes logit at lr 3e-4, W = 1000, shipped as
#     models/medlord_controlnet_reward.pt (--medlord_weights reward). medlord_rows NAME FILE SEEDS writes the rows
#     medlord_3d_ldm (the starting ControlNet, generated once) and medlord_reward (FILE) in bundle/eval/seed_spread/NAME
medlord_rows() {
  local E="['bundle/configs/inference.json','bundle/configs/evaluate.json']" A="--eval_limit 8 --eval_repeats 2 --eval_seeds $3"
  [ -f bundle/eval/seed_spread/$1/medlord_3d_ldm/datalist.json ] || \
    $B "$E" $A --eval_dir bundle/eval/seed_spread/$1 --eval_rows "{'medlord_3d_ldm': {'backend': 'medlord'}}"
  $B "$E" $A --eval_dir bundle/eval/seed_spread/$1 --medlord_weights reward --medlord_controlnet_file $2 \
    --eval_rows "{'medlord_3d_ldm': {'backend': 'medlord'}, 'medlord_reward': {'backend': 'medlord'}}"
}
M="$R,$D"
for RUN in "medlord1|0.0001|4|25|{'slice': 0.5, 'planes': 0.5}|,'bundle/configs/reward_features.json'" \
           "medlord2|0.001|3|25|{'slice': 0.5, 'planes': 0.5}|,'bundle/configs/reward_features.json'" \
           "medlord3|0.0003|2|1000|{'planes': 1.0}|"; do
  IFS="|" read -r NAME LR EPOCHS W MIX EXTRA <<< "$RUN"
  $B "[$M$EXTRA,'bundle/configs/finetune_reward_medlord.json']" --stage reward_$NAME $COMMON --reward_lr $LR \
    --reward_weights "$MIX" --reward_iterations_per_epoch 4 --max_epochs $EPOCHS --reward_function_weight $W \
    --reward_weights_file medlord_controlnet_reward_$NAME.pt
  mv bundle/models/medlord_controlnet_reward_$NAME.pt bundle/runs/reward_$NAME/
  mkdir -p bundle/eval/seed_spread/$NAME
  [ "$NAME" = medlord1 ] || cp -rn bundle/eval/seed_spread/medlord1/medlord_3d_ldm bundle/eval/seed_spread/$NAME/
  medlord_rows $NAME bundle/runs/reward_$NAME/medlord_controlnet_reward_$NAME.pt "[0]"
done
medlord_rows medlord3_seed1 bundle/runs/reward_medlord3/medlord_controlnet_reward_medlord3.pt "[1]"
cp bundle/runs/reward_medlord3/medlord_controlnet_reward_medlord3.pt bundle/models/medlord_controlnet_reward.pt
$PY bundle/docs/preview_reward_direct.py --base medlord3 --runs medlord3 --modes medlord --out preview_reward_medlord.png
cp bundle/runs/reward_medlord3/reward_medlord3_curves.png bundle/docs/images/reward/
$PY bundle/docs/reward_alignment_check.py --medlord $S/medlord2 $S/medlord2
for SEED in medlord3 medlord3_seed1; do $PY bundle/docs/reward_alignment_check.py --medlord $S/$SEED $S/$SEED; done
# 4. the reward after
$B "[$R,'bundle/configs/finetune_reward.json','bundle/configs/evaluate_reward.json']" --window_weights reward
# 5. the metrics the reward does not see (FID per plane, through-plane, fidelity, adherence, diversity), before/after
$B "['bundle/configs/inference.json','bundle/configs/evaluate.json']" --eval_dir bundle/eval/reward_eval --eval_rows \
  "{'gem3d_true': {'informed': {'mode': 'true'}}, 'gem3d_true_ddim_eta1': {'informed': {'mode': 'true'}, 'solver': 'ddim', 'eta': 1.0}, 'gem3d_ic': {'informed': {'mode': 'ic'}}, 'reward_tuned_true': {'informed': {'mode': 'true'}, 'network': 'reward'}, 'reward_tuned_true_ddim_eta1': {'informed': {'mode': 'true'}, 'network': 'reward', 'solver': 'ddim', 'eta': 1.0}, 'reward_tuned_ic': {'informed': {'mode': 'ic'}, 'network': 'reward'}}"
# 6. the downstream classification test on the graded demo (built on first use): real / stage-2 / reward rows, with the
#    study's IC informed slices and (0.20.0) with each patient's own
$B "['bundle/configs/inference.json','bundle/configs/train_classifier.json','bundle/configs/grade_study.json']"
$B "['bundle/configs/inference.json','bundle/configs/train_classifier.json','bundle/configs/grade_study.json']" --informed_mode true \
  --grade_study_dir bundle/eval/grade_study_true
