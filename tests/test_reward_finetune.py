"""Reward fine-tuning (issue 17): rollouts are the real propagation sampler with recorded steps, re-scoring gives
ratio 1 under unchanged weights, advantages per mask, one PPO update moves only the pseudo-3D layers, and the jobs
(critic training, fine-tuning, resumption, the switch to the fine-tuned weights) end to end on the tiny model."""

import copy
import glob
import json
import os
import shutil
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import run_bundle
from ignite.engine import Engine, Events
from scripts.data.datalist import read_datalist
from scripts.data.demo_phantom import build_demo_dataset
from scripts.errors import Gem3dInputError
from scripts.networks.layer_gains import folded_state_dict, reward_parameters, set_gains
from scripts.reward.critic_data import real_volumes
from scripts.reward.direct import DirectRewardTuner
from scripts.reward.ppo import BestRewardKeeper, RewardFineTuner, clipped_objective, mask_advantages, score_rollouts
from scripts.sampling.logprob_ddim import LogProbDDIMScheduler
from scripts.sampling.rollout import RolloutSampler
from scripts.sampling.sampler import PropagationSampler, SamplerSettings
from scripts.sampling.volume_rollout import VolumeRolloutSampler
from scripts.sampling.window_plan import plan_windows, waves
from tiny_model import build_synthesizer, make_tiny_model, parser_with

REWARD = ("inference.json", "reward.json")
MEDLORD = ("finetune_reward.json", "finetune_reward_medlord.json")  # on the PPO job; the direct job between them
SCHEDULE = dict(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015, beta_end=0.0205)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_demo):
    root = tmp_path_factory.mktemp("tinyreward")
    overrides = make_tiny_model(str(root / "models"), os.path.dirname(tiny_demo))
    parser = parser_with(overrides, REWARD)
    torch.manual_seed(1)
    # MONAI zero-initialises the UNet's output convolution (and gem3d the pseudo-3D layers): random weights there,
    # else the tiny model's output would not depend on any weight and no gradient could reach them
    for name in ("volume.pt", "medlord_unet.pt", "medlord_controlnet.pt"):  # the 3D backend too
        state = torch.load(f"{root}/models/{name}", weights_only=True)
        for value in state.values():
            if value.is_floating_point() and not value.any():
                value.normal_(0.0, 0.05)
        torch.save(state, f"{root}/models/{name}")
    for kind in ("slice", "planes", "volume"):
        torch.save(parser.get_parsed_content(f"critic_defs#{kind}").state_dict(), f"{root}/models/critic_{kind}.pt")
    return {**overrides, "run_dir": str(root / "runs")}


def _scheduler():
    sched = LogProbDDIMScheduler(
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction", **SCHEDULE
    )
    return sched


class Denoiser(torch.nn.Module):
    """A small window 'model' with a parameter, mixing slices so that windows influence each other."""

    def __init__(self, labels: int = 1):
        super().__init__()
        self.conv = torch.nn.Conv3d(4 + labels + 4 + 1, 4, 3, padding=1)  # latents, mask, informed, offset

    def forward(self, x, t):
        return self.conv(x) * 0.1


def _inputs(z=20):
    mask = torch.zeros(z, 1, 6, 6)
    mask[:, :, 2:4, 2:4] = 1
    return mask, torch.randn(4, 6, 6)


def test_rollout_is_the_propagation_sampler_and_rescoring_gives_ratio_one():
    torch.manual_seed(0)
    net = Denoiser()
    settings = SamplerSettings(window=8, overlap=2, steps=4, eta=1.0, precision="fp32")
    mask, informed = _inputs()
    plain = PropagationSampler(net, _scheduler(), settings, progress=False)
    ref = plain.sample(mask, informed, 0.5, torch.Generator().manual_seed(3))
    rollout = RolloutSampler(net, _scheduler(), settings)
    out = rollout.sample(mask, informed, 0.5, torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, ref, rtol=0, atol=0)  # the same draws: the rollout is what users get
    assert len(rollout.trajectory) == settings.steps * len(waves(plan_windows(20, 8, 2, 0.5)))  # every step recorded
    later = [s for s in rollout.trajectory if not s.free.all()]
    assert later and all(int((~s.free).sum(1).min()) >= 2 for s in later)  # overlap slices are not the policy's
    for step in rollout.trajectory:
        new = rollout.logprob(step)
        torch.testing.assert_close(torch.exp(new - step.logprob), torch.ones_like(new))
    # the known slices do not enter the log-probability: moving them leaves it unchanged
    step = later[0]
    moved = type(step)(
        step.x, step.cond, step.t, step.prev + (~step.free)[:, None, :, None, None] * 5.0, step.free, step.logprob
    )
    torch.testing.assert_close(rollout.logprob(moved), rollout.logprob(step))
    loss, stats = clipped_objective(rollout.logprob(step), step.logprob, torch.ones(len(step.logprob)), 1e-4)
    loss.backward()
    assert net.conv.weight.grad.abs().sum() > 0 and stats["clip_fraction"] == 0.0 and stats["approx_kl"] < 1e-10
    with pytest.raises(Gem3dInputError, match="eta > 0"):
        RolloutSampler(net, _scheduler(), SamplerSettings(eta=0.0))


def test_guided_rollouts_record_their_scale_and_rescore_with_it():
    """A rollout drawn with lesion guidance re-scores with the scale it was drawn with, whatever the sampler's scale
    is by then (rollouts of the true and IC modes alternate, and "auto" guides only the second)."""
    torch.manual_seed(0)
    net = Denoiser(labels=3)  # mask labels: background, anatomy, lesion
    with torch.no_grad():
        net.conv.weight[:, 4 + 2] *= 100.0  # a lesion that matters to the prediction
    settings = SamplerSettings(window=8, overlap=2, steps=3, eta=1.0, precision="fp32")
    mask = torch.zeros(20, 3, 6, 6)
    mask[:, 1] = 1.0
    mask[8:12, 1, 2:4, 2:4], mask[8:12, 2, 2:4, 2:4] = 0.0, 1.0  # a lesion in slices 8-11
    rollout = RolloutSampler(net, _scheduler(), settings, lesions=((2,), 1))
    rollout.lesion_guidance = 2.0
    rollout.sample(mask, torch.randn(4, 6, 6), 0.5, torch.Generator().manual_seed(3))
    assert {s.guidance for s in rollout.trajectory} == {2.0}
    rollout.lesion_guidance = 1.0
    lesioned = [s for s in rollout.trajectory if s.cond[:, 2].any()]
    assert lesioned
    for step in lesioned:
        torch.testing.assert_close(rollout.logprob(step), step.logprob)
    plain = replace(lesioned[0], guidance=1.0)
    assert (rollout.logprob(plain) - plain.logprob).abs().item() > 1e-3


def test_pathwise_latents_are_the_rollout_and_reach_every_generated_slice():
    """Reward backpropagation's latents: equal to what the rollout drew, bit for bit, and every slice carries the
    gradient of the last step of the window that generated it."""
    torch.manual_seed(0)
    net = Denoiser()
    settings = SamplerSettings(window=8, overlap=2, steps=3, eta=1.0, precision="fp32")
    mask, informed = _inputs()
    rollout = RolloutSampler(net, _scheduler(), settings)
    out = rollout.sample(mask, informed, 0.5, torch.Generator().manual_seed(3))
    latents = rollout.pathwise_latents()
    torch.testing.assert_close(latents.detach(), out, rtol=0, atol=0)
    for z in range(len(latents)):
        (grad,) = torch.autograd.grad(latents[z].sum(), net.conv.weight, retain_graph=True)
        assert grad.abs().sum() > 0, z
    # the slope of a slice is its own window's last step: a slice of the first wave moves as that step's mean does
    first = rollout.groups_sampled[0][0]
    z = sorted(first.new)[0]
    step = rollout.trajectory[settings.steps - 1]
    mean, _ = rollout.scheduler.step_mean(rollout.predict(step.x, step.t, step.cond), step.t, step.x, 1.0)
    direct = torch.autograd.grad(mean[0][:, z - first.start].sum(), net.conv.weight)[0]
    torch.testing.assert_close(torch.autograd.grad(latents[z].sum(), net.conv.weight)[0], direct)


def test_advantages_are_normalised_per_mask():
    rewards = torch.tensor([1.0, 3.0, 10.0, 10.5, 11.0, 9.5])
    adv = mask_advantages(rewards, [0, 0, 1, 1, 1, 1])
    torch.testing.assert_close(adv[:2], torch.tensor([-1.0, 1.0]), atol=1e-5, rtol=0)
    assert abs(float(adv[2:].mean())) < 1e-6 and abs(float(adv[2:].std(unbiased=False)) - 1) < 1e-4
    assert float(adv[4]) > float(adv[3]) > float(adv[2]) > float(adv[5])  # the order within a mask is kept
    with pytest.raises(Gem3dInputError, match="at least 2 samples"):
        mask_advantages(torch.tensor([1.0, 2.0, 3.0]), [0, 0, 1])


def test_one_ppo_update_changes_only_the_pseudo3d_layers(tiny, tiny_demo, tmp_path):
    parser = parser_with(
        {**tiny, "reward_masks_per_iteration": 1, "reward_samples_per_mask": 2}, REWARD + ("finetune_reward.json",)
    )
    tuner = parser.get_parsed_content("fine_tuner")
    policy = parser.get_parsed_content("policy")
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("temporal.") for n in trainable)
    item = read_datalist(tiny_demo, ["training"])["training"][0]
    # fixed masks and seeds: the same weights score the same, so two weight files compare on equal terms
    first = score_rollouts(tuner, tiny_demo, "test", 1, str(tmp_path / "a.json"))
    again = score_rollouts(tuner, tiny_demo, "test", 1, str(tmp_path / "b.json"))
    assert first["mean"] == again["mean"] and len(first["per_volume"]) == 2
    assert json.load(open(tmp_path / "a.json"))["weights"] == "stage2"
    # with the real test volumes as the reference: their reward under the same critics, the rollouts' unchanged
    real = real_volumes([[tiny_demo, "test"]], *(parser.get_parsed_content(k) for k in ("model_grid", "num_labels")))
    referenced = score_rollouts(tuner, tiny_demo, "test", 1, str(tmp_path / "c.json"), real=real)
    direct = [tuner.reward(v["image"][0], v["label"][0]) for v in real]
    assert referenced["mean"] == first["mean"] and len(real) == 2
    assert referenced["real"] == pytest.approx({k: np.mean([d[k] for d in direct]) for k in direct[0]})
    assert json.load(open(tmp_path / "c.json"))["real"] == pytest.approx(referenced["real"])
    engine = Engine(tuner)
    engine.state.iteration = 1
    out = tuner(engine, [item])
    for key in ("loss", "reward", "reward_slice", "reward_planes", "approx_kl", "clip_fraction", "grad_norm"):
        assert np.isfinite(out[key]), key
    after = policy.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= {k for k in before if k.startswith("temporal.")}
    assert any(k.startswith("temporal.") for k in changed)
    pieces = (tuner.synth, tuner.sampler, tuner.reward, tuner.optimizer)
    with pytest.raises(Gem3dInputError, match="advantages are per mask"):
        RewardFineTuner(*pieces, samples_per_mask=1)
    with pytest.raises(Gem3dInputError, match="step_fraction"):
        RewardFineTuner(*pieces, step_fraction=0.0)


def test_one_direct_update_follows_the_critics_gradient_and_moves_only_the_pseudo3d_layers(tiny, tiny_demo):
    """Reward backpropagation: the delivered image is the rollout's, the gradient passes only where the decoder's
    value reached it (anatomy, unclipped), one update raises the reward of the same draw and moves only the
    trainable weights, never the critics'."""
    job = {**tiny, "reward_masks_per_iteration": 1, "reward_samples_per_mask": 1, "reward_lr": 1e-3}
    parser = parser_with(job, REWARD + ("finetune_reward.json", "finetune_reward_direct.json"))
    tuner, policy = parser.get_parsed_content("fine_tuner"), parser.get_parsed_content("policy")
    item = read_datalist(tiny_demo, ["training"])["training"][0]
    ((_, _, informed, seed),) = tuner.jobs(0, [item])  # the draw of an iteration 0
    _, score, image = tuner.rollout(item, seed, informed)
    pathwise = tuner.pathwise_image(image)
    torch.testing.assert_close(pathwise.detach(), torch.from_numpy(image), rtol=0, atol=0)
    (grad,) = torch.autograd.grad(pathwise.sum(), tuner.params[0], retain_graph=True)
    assert grad.abs().sum() > 0
    dead = torch.zeros_like(pathwise)
    dead[torch.from_numpy((image <= 0) | (image >= 1))] = 1.0
    dead_grad = torch.autograd.grad((pathwise * dead).sum(), tuner.params[0], retain_graph=True, allow_unused=True)[0]
    assert dead.any() and (dead_grad is None or not dead_grad.any())
    total, _ = tuner.reward.critics_reward(pathwise)
    assert float(total) == pytest.approx(score["reward"], abs=1e-5)
    critics = {
        k: copy.deepcopy(c.state_dict()) for k, c in ((k, tuner.reward.critics[k]) for k in tuner.reward.weights)
    }
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    engine = Engine(tuner)
    engine.state.iteration = 0
    out = tuner(engine, [item])
    assert out["reward"] == pytest.approx(score["reward"]) and out["grad_norm"] > 0 and out["drift"] > 0
    _, again, _ = tuner.rollout(item, seed, informed)
    assert again["reward"] > score["reward"]  # the same draw under the updated weights
    changed = {k for k in before if not torch.equal(before[k], policy.state_dict()[k])}
    assert changed and all(k.startswith("temporal.") for k in changed)
    for kind, state in critics.items():
        now = tuner.reward.critics[kind].state_dict()
        assert all(torch.equal(now[k], v) for k, v in state.items()), kind
    tuner.reward.consistency_weight = 1.0  # computed in NumPy: no gradient to follow
    with pytest.raises(Gem3dInputError, match="differentiable"):
        DirectRewardTuner(tuner.synth, tuner.sampler, tuner.reward, tuner.optimizer)


def test_function_bound_pulls_the_predictions_back_to_stage2(tiny, tiny_demo):
    """The functional bound: inside ``anchor_weights`` the network is stage 2's and leaves it as it was; the
    prediction change is 0 at stage 2 and positive off it, and one update with the bound brings the predictions on a
    recorded state back toward stage 2's, where the same update without it does not."""
    item = read_datalist(tiny_demo, ["training"])["training"][0]
    configs = REWARD + ("finetune_reward.json", "finetune_reward_direct.json")
    job = {**tiny, "reward_masks_per_iteration": 1, "reward_samples_per_mask": 1, "reward_lr": 1e-3}
    after = {}
    for weight in (0.0, 1e4):
        parser = parser_with({**job, "reward_anchor_weight": 0.0, "reward_function_weight": weight}, configs)
        tuner, policy = parser.get_parsed_content("fine_tuner"), parser.get_parsed_content("policy")
        ((_, _, informed, seed),) = tuner.jobs(1, [item])
        tuner.rollout(item, seed, informed)
        step = tuner.sampler.trajectory[len(tuner.sampler.trajectory) // 2]
        assert float(tuner.prediction_change(step)) == 0.0
        torch.manual_seed(0)
        with torch.no_grad():  # a drift that earlier iterations built up
            for p in tuner.params:
                p.add_(0.02 * torch.randn_like(p))
        moved = {k: v.clone() for k, v in policy.state_dict().items()}
        before = float(tuner.prediction_change(step))
        assert before > 0
        assert all(torch.equal(v, policy.state_dict()[k]) for k, v in moved.items())  # restored after the anchor
        engine = Engine(tuner)
        engine.state.iteration = 1
        assert tuner(engine, [item])["function_drift"] > 0  # measured even at weight 0
        after[weight] = float(tuner.prediction_change(step)) / before
    assert after[1e4] < 1.0 and after[1e4] < after[0.0]
    with pytest.raises(RuntimeError) as refused:
        parser_with({**job, "reward_function_steps": 0}, configs).get_parsed_content("fine_tuner")
    assert "function_steps >= 1" in str(refused.value.__cause__)


def test_layer_gains_start_at_stage2_train_alone_and_fold_into_its_keys(tiny, tiny_demo):
    job = REWARD + ("finetune_reward.json",)
    plain = parser_with(tiny, job).get_parsed_content("policy")
    overrides = {**tiny, "reward_trainable": "gains", "reward_masks_per_iteration": 1, "reward_samples_per_mask": 2}
    parser = parser_with(overrides, job)
    policy, tuner = parser.get_parsed_content("policy"), parser.get_parsed_content("fine_tuner")
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable == [f"temporal.{name}.gain" for name in policy.temporal] and len(tuner.params) == len(trainable)
    x, t = torch.randn(1, policy.unet.in_channels, 4, 8, 8), torch.tensor([500])
    with torch.no_grad():
        stage2 = plain(x, t)
        # every gain 1: stage 2 (to rounding: oneDNN may pick another kernel for a network built a second time)
        torch.testing.assert_close(policy(x, t), stage2, rtol=1e-5, atol=1e-6)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    engine = Engine(tuner)
    engine.state.iteration = 1
    tuner(engine, [read_datalist(tiny_demo, ["training"])["training"][0]])
    changed = {k for k in before if not torch.equal(before[k], policy.state_dict()[k])}
    assert changed and all(k.endswith(".gain") for k in changed)  # one PPO update moves the gains only
    with torch.no_grad():
        for k, gain in enumerate(tuner.params):
            gain.fill_(0.5 + 0.1 * k)
        tuned = policy(x, t)
        assert not torch.allclose(tuned, stage2)
        state = folded_state_dict(policy)
        assert set(state) == set(plain.state_dict())  # the written file has stage 2's keys
        plain.load_state_dict(state)
        torch.testing.assert_close(plain(x, t), tuned, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="reward_trainable"):
        reward_parameters(policy, "everything")
    set_gains(policy, 0.0)  # no pseudo-3D contribution: the folded output maps are zero
    state = folded_state_dict(policy)
    outputs = [k for k in state if k.startswith("temporal.") and (".conv." in k or ".out_proj." in k)]
    assert len(outputs) == 2 * len(policy.temporal) and not any(state[k].any() for k in outputs)


def test_masks_of_an_iteration_take_the_informed_modes_in_turn(tiny, tiny_demo):
    """Several informed-slice specs: each mask of an iteration gets one spec for all its rollouts (advantages compare
    like with like), the masks take the specs in turn, and each spec completes the synthesizer's own."""
    specs = [{"mode": "true"}, {"mode": "ic"}]
    overrides = {
        **tiny,
        "reward_masks_per_iteration": 2,
        "reward_samples_per_mask": 2,
        "reward_rollout_informed": specs,
    }
    tuner = parser_with(overrides, REWARD + ("finetune_reward.json",)).get_parsed_content("fine_tuner")
    seen = []
    generate = tuner.synth._generate

    def spy(mask, rng, generator, informed, *args):  # the spec a volume is generated with
        seen.append(informed)
        return generate(mask, rng, generator, informed, *args)

    tuner.synth._generate = spy
    items = read_datalist(tiny_demo, ["training"])["training"][:2]
    engine = Engine(tuner)
    engine.state.iteration = 1
    out = tuner(engine, items)
    assert np.isfinite(out["reward"]) and np.isfinite(out["loss"])
    assert [s["mode"] for s in seen] == ["true", "true", "ic", "ic"]
    ic = next(s for s in seen if s["mode"] == "ic")
    assert ic["pool"] == tuner.synth.informed["pool"]  # completed by the synthesizer's own spec


def test_anchor_penalty_pulls_the_trainable_weights_back_to_the_start(tiny, tiny_demo):
    item = read_datalist(tiny_demo, ["training"])["training"][0]
    drifts = {}
    for weight in (0.0, 1e4):
        overrides = {**tiny, "reward_masks_per_iteration": 1, "reward_samples_per_mask": 2}
        parser = parser_with({**overrides, "reward_anchor_weight": weight}, REWARD + ("finetune_reward.json",))
        tuner = parser.get_parsed_content("fine_tuner")
        torch.manual_seed(0)
        with torch.no_grad():  # a drift that earlier iterations built up
            for p in tuner.params:
                p.add_(0.01 * torch.randn_like(p))
        before = float(tuner.drift().detach()) ** 0.5
        engine = Engine(tuner)
        engine.state.iteration = 1
        out = tuner(engine, [item])
        assert out["drift"] == pytest.approx(float(tuner.drift().detach()) ** 0.5)
        drifts[weight] = (before, out["drift"])
    assert drifts[1e4][1] < drifts[1e4][0]  # pulled back toward the stage-2 weights
    assert drifts[1e4][1] < drifts[0.0][1]
    with pytest.raises(RuntimeError) as refused:
        parser_with({**tiny, "reward_anchor_weight": -1.0}, REWARD + ("finetune_reward.json",)).get_parsed_content(
            "fine_tuner"
        )
    assert "anchor_weight must be >= 0" in str(refused.value.__cause__)


def test_keeper_writes_weights_only_when_the_held_out_reward_rises(tmp_path):
    policy = torch.nn.Linear(3, 2)
    scores = iter([0.0, -1.0, 0.5, 0.2])  # the start, then iterations 1, 2, 3
    states = {}

    def step(engine, _):
        with torch.no_grad():
            policy.weight.add_(1.0)
        states[engine.state.iteration] = {k: v.clone() for k, v in policy.state_dict().items()}

    weights, history = tmp_path / "models" / "tuned.pt", tmp_path / "run" / "reward_validation.json"
    keeper = BestRewardKeeper(None, [{"id": "held_out"}], policy, str(weights), str(history), interval=1)
    keeper.score = lambda: next(scores)
    engine = Engine(step)
    keeper.attach(engine)
    written = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: written.append(weights.exists()))
    engine.run([0], max_epochs=3, epoch_length=1)
    assert written == [False, True, True]  # iteration 1 scored below the starting weights: nothing written
    saved = torch.load(weights, weights_only=True)
    assert all(torch.equal(saved[k], states[2][k]) for k in saved)  # the best iteration's weights, not the last
    record = json.load(open(history))["history"]
    assert [(i, r, k) for i, r, k in record] == [(0, 0.0, False), (1, -1.0, False), (2, 0.5, True), (3, 0.2, False)]
    assert (tmp_path / "run" / "reward_validation.png").is_file()
    resumed = BestRewardKeeper(None, [{"id": "held_out"}], policy, str(weights), str(history), interval=1)
    resumed.score = lambda: pytest.fail("a resumed run must not score its loaded weights as the start")
    resumed.start(None)
    assert resumed.best == 0.5
    final = tmp_path / "final.pt"  # no held-out masks: the final weights are written, as before the keeper
    plain = BestRewardKeeper(None, [], policy, str(final), str(tmp_path / "unused.json"))
    engine = Engine(step)
    plain.attach(engine)
    engine.run([0], max_epochs=1, epoch_length=1)
    assert torch.equal(torch.load(final, weights_only=True)["weight"], policy.weight)


def test_finetune_job_with_held_out_masks_and_anchor(tiny, tiny_demo, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny["model_dir"], models)
    job = {
        **tiny,
        "model_dir": str(models),
        "run_dir": str(tmp_path / "runs"),
        "max_epochs": 1,
        "reward_iterations_per_epoch": 1,
        "reward_masks_per_iteration": 1,
        "reward_samples_per_mask": 2,
        "reward_val_masks": 1,
        "reward_anchor_weight": 10.0,
    }
    run_bundle([*REWARD, "finetune_reward.json"], job)
    record = json.load(open(tmp_path / "runs" / "reward" / "reward_validation.json"))["history"]
    assert [i for i, _, _ in record] == [0, 1] and not record[0][2]
    assert record[1][2] == (record[1][1] > record[0][1])
    assert (models / "volume_reward.pt").is_file() == record[1][2]
    curves = json.load(open(tmp_path / "runs" / "reward" / "reward_curves.json"))
    assert curves["drift"] and curves["drift"][0][1] > 0
    # the anchor travels with the checkpoints: a resumed run keeps the weights it started from, even when the
    # stage-2 file changed in between
    start = torch.load(models / "volume.pt", weights_only=True)
    changed = {k: v + 0.5 if k.startswith("temporal.") and v.is_floating_point() else v for k, v in start.items()}
    torch.save(changed, models / "volume.pt")
    run_bundle([*REWARD, "finetune_reward.json"], {**job, "max_epochs": 2})
    ckpt = torch.load(tmp_path / "runs" / "reward" / "checkpoint_final.pt", weights_only=False)
    policy = parser_with(job, REWARD + ("finetune_reward.json",)).get_parsed_content("policy")
    trainable = [n for n, _ in policy.named_parameters() if n.startswith("temporal.")]  # freeze_spatial's order
    assert len(ckpt["fine_tuner"]["anchor"]) == len(trainable)
    for name, anchor in zip(trainable, ckpt["fine_tuner"]["anchor"]):
        assert torch.equal(anchor, start[name]), name
    held_out = read_datalist(tiny_demo, ["training"])["training"][-1]["id"]
    parser = parser_with(job, REWARD + ("finetune_reward.json",))
    assert held_out not in [c["id"] for c in parser.get_parsed_content("reward_cases")]
    assert [c["id"] for c in parser.get_parsed_content("reward_val_cases")] == [held_out]


def test_critic_finetune_and_study_jobs_end_to_end_with_resumption(tiny, tiny_demo, tmp_path):
    run_bundle([*REWARD, "train_critic.json"], {**tiny, "critic": "volume", "max_epochs": 1, "critic_limit": 2})
    models, runs = tiny["model_dir"], tiny["run_dir"]
    assert os.path.isfile(f"{runs}/reward/generated_training.npz")  # generated once, cached for the other critic
    assert os.path.isfile(f"{runs}/critic_volume/critic_volume_curve.png")
    job = {
        **tiny,
        "max_epochs": 1,
        "reward_iterations_per_epoch": 1,
        "reward_masks_per_iteration": 1,
        "reward_samples_per_mask": 2,
        "reward_val_masks": 0,  # no held-out masks: the final weights are written (the keeper has its own tests)
    }
    run_bundle([*REWARD, "finetune_reward.json"], job)
    weights = f"{models}/volume_reward.pt"
    first = torch.load(weights, weights_only=True)
    base = torch.load(f"{models}/volume.pt", weights_only=True)
    assert first.keys() == base.keys()
    moved = [k[len("temporal.") :] for k in base if k.startswith("temporal.") and not torch.equal(first[k], base[k])]
    assert moved
    key = moved[0]
    assert all(torch.equal(first[k], base[k]) for k in base if not k.startswith("temporal."))
    curves = json.load(open(f"{runs}/reward/reward_curves.json"))
    assert [i for i, _ in curves["reward"]] == [1]
    assert os.path.isfile(f"{runs}/reward/reward_curves.png") and glob.glob(f"{runs}/reward/events.out.tfevents*")
    run_bundle([*REWARD, "finetune_reward.json"], {**job, "max_epochs": 2})  # resumes at iteration 2
    curves = json.load(open(f"{runs}/reward/reward_curves.json"))
    assert [i for i, _ in curves["reward"]] == [1, 2]
    # the main job selects the fine-tuned weights by a switch, recorded with every volume; a wrong name is refused
    synth = build_synthesizer(tiny, window_weights="reward")
    mask = read_datalist(tiny_demo, ["test"])["test"][0]["label"]
    assert synth.synthesize(mask, 0, "case")["record"]["window_weights"] == "reward"
    tuned = torch.load(weights, weights_only=True)  # after the resumed run
    assert torch.equal(synth.model.window_net.state_dict()["temporal." + key], tuned["temporal." + key])
    with pytest.raises(RuntimeError) as refused:  # the config's error, raised by window_weights_file
        build_synthesizer(tiny, window_weights="best")
    assert "window_weights must be one of" in str(refused.value.__cause__)
    # the classification study: real, stage-2 and fine-tuned rows on a tiny graded demo set
    graded = build_demo_dataset(
        str(tmp_path / "grades"), num_train=2, num_test=2, size=(32, 32, 32), previews=0, grades=True
    )
    study = tmp_path / "study"
    grade_job = {
        **tiny,
        "dataset_dir": os.path.dirname(graded),
        "grade_study_dir": str(study),
        "grade_seeds": [0],
        "max_epochs": 1,
        "cls_roi": 16,
    }
    run_bundle(["inference.json", "train_classifier.json", "grade_study.json"], grade_job)
    summary = json.load(open(study / "grade_study.json"))
    assert set(summary["summary"]) == {"real", "gem3d_stage2", "gem3d_reward"}
    synthetic = json.load(open(study / "synthetic_reward" / "datalist.json"))["training"]
    assert [e["class"] for e in synthetic] == ["HGG", "LGG"]  # the source cases' classes
    assert os.path.isfile(study / "grade_study.png") and summary["runs"]["real"]["0"]["cases"] == 2
    records = glob.glob(str(study / "synthetic_reward" / "records" / "*.json"))
    assert records and json.load(open(records[0]))["window_weights"] == "reward"


def test_hardened_critic_sees_the_gained_volumes_and_leaves_the_window_model_as_it_was(tiny, tiny_demo, tmp_path):
    from scripts.reward.critic_data import generated_family, generated_volumes

    seed, informed = 0, {"mode": "true"}
    job = {**tiny, "run_dir": str(tmp_path / "runs"), "seed": seed, "reward_informed": informed}
    parser = parser_with(job, REWARD)
    synth, sampler = parser.get_parsed_content("gem3d_synthesizer"), parser.get_parsed_content("rollout_sampler")
    # generated where and as the critic job below generates its training side, so that the job reuses these caches
    cache = parser.get_parsed_content("reward_cache_dir") + "/generated_training.npz"
    trains = {n: p.requires_grad for n, p in synth.model.window_net.named_parameters()}
    family = generated_family(synth, sampler, tiny_demo, "training", cache, seed, 2, informed, [1.0, 2.0])
    # which weights train is as before (the gain attached for the generation is left frozen at 1)
    after = {n: p.requires_grad for n, p in synth.model.window_net.named_parameters()}
    assert all(after[n] == t for n, t in trains.items()) and not any(after[n] for n in set(after) - set(trains))
    assert os.path.isfile(cache) and os.path.isfile(cache.replace(".npz", "_gain2.npz"))
    assert len(family) == 4 and [v["id"].endswith("_gain2") for v in family] == [False, False, True, True]
    assert not np.allclose(family[0]["image"], family[2]["image"])  # gain 2 changes the volume
    # afterwards the window model is stage 2's function again: gain 1 generated anew reproduces the first volumes
    again = generated_volumes(synth, sampler, tiny_demo, "training", str(tmp_path / "again.npz"), seed, 2, informed)
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(again, family[:2]))
    # the job: the negatives at both gains, real inputs weighted by 2, the critic written to critic_dir only
    job = {**job, "critic": "planes", "max_epochs": 1, "critic_limit": 2, "critic_fake_gains": [1.0, 2.0]}
    job["critic_dir"] = str(tmp_path / "critics")
    shipped = torch.load(f"{tiny['model_dir']}/critic_planes.pt", weights_only=True)
    run_bundle([*REWARD, "train_critic.json"], job)
    hardened = torch.load(str(tmp_path / "critics" / "critic_planes.pt"), weights_only=True)
    assert any(not torch.equal(hardened[k], shipped[k]) for k in shipped)
    untouched = torch.load(f"{tiny['model_dir']}/critic_planes.pt", weights_only=True)
    assert all(torch.equal(v, untouched[k]) for k, v in shipped.items())
    assert os.path.isfile(cache.replace("training", "test").replace(".npz", "_gain2.npz"))


def test_critic_inputs_and_the_reward_mix(tmp_path):
    from scripts.reward.critic_data import critic_inputs
    from scripts.reward.rewards import MultiScaleReward

    vol = np.zeros((16, 16, 10), np.float32)
    vol[4:12, 2:14, 3:8] = 1.0  # anatomy in 5 axial slices, 8 sagittal (x) and 12 coronal (y) planes
    assert critic_inputs(vol, "slice").shape == (5, 1, 16, 16)
    assert critic_inputs(vol, "planes").shape == (8 + 12, 1, 16, 10)
    assert critic_inputs(vol, "volume").shape == (1, 1, 16, 16, 10)
    with pytest.raises(Gem3dInputError, match="critic kind"):
        critic_inputs(vol, "axial")

    class Constant(torch.nn.Module):  # a critic whose logit is the mean intensity times a constant
        def __init__(self, c):
            super().__init__()
            self.c = torch.nn.Parameter(torch.tensor(float(c)))

        def forward(self, x):
            return x.flatten(1).mean(1, keepdim=True) * self.c

    critics = {k: Constant(c) for k, c in (("slice", 1.0), ("planes", 2.0), ("volume", 3.0))}
    files = {}
    for k, net in critics.items():
        files[k] = str(tmp_path / f"{k}.pt")
        torch.save(net.state_dict(), files[k])
    reward = MultiScaleReward(critics, files, {"slice": 1.0, "planes": 3.0})
    out = reward(vol)
    s = float(critic_inputs(vol, "slice").reshape(5, -1).mean(1).mean())
    p = 2.0 * float(critic_inputs(vol, "planes").reshape(20, -1).mean(1).mean())
    assert out["slice"] == pytest.approx(s) and out["planes"] == pytest.approx(p) and "volume" not in out
    assert out["reward"] == pytest.approx((s + 3 * p) / 4)
    with pytest.raises(ValueError, match="not all 0"):
        MultiScaleReward(critics, files, {"slice": 0.0})


class _Reward:
    """What AdversarialCritics needs of a MultiScaleReward: the mix weights, the critics by kind and what share of
    anatomy a plane needs to be scored."""

    def __init__(self, critics: dict):
        self.weights, self.critics, self.min_foreground = {k: 1.0 for k in critics}, critics, 0.05


def _textured(rng, n: int, noise: float) -> list[np.ndarray]:
    """(S, S, Z) volumes: a bright block, with (real) or without (generated) voxel noise."""
    out = []
    for _ in range(n):
        v = np.zeros((16, 16, 16), np.float32)
        v[2:14, 2:14, 2:14] = 0.6
        out.append(np.clip(v + noise * rng.standard_normal(v.shape).astype(np.float32) * (v > 0), 0, None))
    return out


def test_adversarial_critics_learn_from_the_rollouts_and_resume():
    from scripts.networks.critics import Critic
    from scripts.reward.adversarial import AdversarialCritics

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    real = [{"image": v[None]} for v in _textured(rng, 4, 0.15)]
    fakes = _textured(rng, 2, 0.0)
    critics = {"slice": Critic([1, 16, 16], [4, 8], [2, 2], dropout=0.0)}
    start = {k: v.clone() for k, v in critics["slice"].state_dict().items()}
    adv = AdversarialCritics(_Reward(critics), real, steps=5, lr=3e-3, batch_size=8, seed=0)
    first = adv.update(fakes)
    for _ in range(6):
        last = adv.update(fakes)
    # the critic tells the rollouts from the real volumes better after its steps, and it alone changed
    assert last["critic_slice_gap"] > first["critic_slice_gap"] + 1.0
    assert last["critic_slice_loss"] < first["critic_slice_loss"]
    assert not critics["slice"].training
    assert any(not torch.equal(v, start[k]) for k, v in critics["slice"].state_dict().items())
    # the checkpoint state: a resumed run continues with the same critic, optimiser and draws
    state = copy.deepcopy(adv.state_dict())  # as a checkpoint file holds it (optimisers hand out live tensors)
    clone = {"slice": Critic([1, 16, 16], [4, 8], [2, 2], dropout=0.0)}
    resumed = AdversarialCritics(_Reward(clone), real, steps=5, lr=3e-3, batch_size=8, seed=99)
    resumed.load_state_dict(state)
    a, b = adv.update(fakes), resumed.update(fakes)
    assert a == pytest.approx(b)
    for k, v in critics["slice"].state_dict().items():
        torch.testing.assert_close(v, clone["slice"].state_dict()[k])
    with pytest.raises(Gem3dInputError, match="not this run's"):
        AdversarialCritics(_Reward({"planes": clone["slice"]}), real, steps=1).load_state_dict(state)
    with pytest.raises(Gem3dInputError, match="real volumes"):
        AdversarialCritics(_Reward(critics), [], steps=1)
    off = AdversarialCritics(_Reward(critics), [], steps=0)  # off: attaches nothing, needs nothing
    engine = Engine(lambda e, b: {})
    off.attach(engine)
    assert not engine.has_event_handler(off.on_iteration, Events.ITERATION_COMPLETED)


def _adversarial_job(tiny, tmp_path, **overrides) -> tuple[dict, object, object]:
    """A one-iteration fine-tuning job with a held-out mask and adversarial critics, on a copy of the tiny models;
    returns (job, models folder, runs folder)."""
    models, runs = tmp_path / "models", tmp_path / "runs"
    shutil.copytree(tiny["model_dir"], models)
    job = {
        **tiny,
        "model_dir": str(models),
        "run_dir": str(runs),
        "max_epochs": 1,
        "reward_iterations_per_epoch": 1,
        "reward_masks_per_iteration": 1,
        "reward_val_masks": 1,
        "reward_critic_batch": 8,
        **overrides,
    }
    return job, models, runs


def test_finetune_job_with_adversarial_critics_keeps_the_shipped_critics(tiny, tiny_demo, tmp_path):
    job, models, runs = _adversarial_job(tiny, tmp_path, reward_samples_per_mask=2, reward_adversarial_steps=2)
    shipped = {k: torch.load(models / f"critic_{k}.pt", weights_only=True) for k in ("slice", "planes")}
    run_bundle([*REWARD, "finetune_reward.json"], job)
    run_bundle([*REWARD, "finetune_reward.json"], {**job, "max_epochs": 2})  # resumes with the adapted critics
    curves = json.load(open(runs / "reward" / "reward_curves.json"))
    assert [i for i, _ in curves["critic_planes_gap"]] == [1, 2] and [i for i, _ in curves["reward"]] == [1, 2]
    ckpt = torch.load(runs / "reward" / "checkpoint_final.pt", weights_only=False)
    for kind, state in shipped.items():
        adapted = torch.load(runs / "reward" / f"critic_{kind}.pt", weights_only=True)
        assert any(not torch.equal(adapted[k], state[k]) for k in state), kind  # the run's critics learnt
        for k, v in ckpt["adversarial"]["critics"][kind].items():
            torch.testing.assert_close(v, adapted[k])
        now = torch.load(models / f"critic_{kind}.pt", weights_only=True)
        assert all(torch.equal(now[k], state[k]) for k in state), kind  # the shipped critics were not touched
    record = json.load(open(runs / "reward" / "reward_validation.json"))["history"]
    assert [i for i, _, _ in record] == [0, 1, 2]
    # the held-out check scores with critics of its own, which the discriminator steps do not reach
    parser = parser_with(job, REWARD + ("finetune_reward.json",))
    keeper, trained = parser.get_parsed_content("keeper_reward"), parser.get_parsed_content("reward")
    assert keeper.critics["planes"] is not trained.critics["planes"]
    assert parser.get_parsed_content("reward_keeper").reward is keeper


def test_direct_finetune_job_with_keeper_and_adversarial_critics(tiny, tiny_demo, tmp_path):
    """The reward-backpropagation job end to end on the tiny model: the PPO job's keeper, anchor, adversarial critics
    and curves, with the direct tuner (resumption is the PPO job's machinery, tested there)."""
    job, models, runs = _adversarial_job(tiny, tmp_path, reward_adversarial_steps=1)
    ppo_before = (models / "volume_reward.pt").read_bytes() if (models / "volume_reward.pt").exists() else None
    configs = [*REWARD, "finetune_reward.json", "finetune_reward_direct.json"]
    run_bundle(configs, job)
    stage = runs / "reward_direct"
    curves = json.load(open(stage / "reward_direct_curves.json"))
    assert [i for i, _ in curves["reward"]] == [1] and curves["drift"][0][1] > 0
    assert curves["critic_planes_gap"] and not curves.get("clip_fraction")  # no ratio to clip in this job
    record = json.load(open(stage / "reward_validation.json"))["history"]
    assert [i for i, _, _ in record] == [0, 1]
    kept = any(k for _, _, k in record)
    assert (models / "volume_reward_direct.pt").is_file() == kept
    ppo_file = models / "volume_reward.pt"  # the PPO job's file (another test may have written one) is not touched
    assert (ppo_file.read_bytes() if ppo_file.exists() else None) == ppo_before
    assert (stage / "critic_planes.pt").is_file()


def test_feature_matching_reward_peaks_at_real_statistics_and_is_differentiable(tmp_path):
    """Feature matching: real volumes score about -1 (a mean square of standardised statistics), a volume with
    slice-to-slice flicker far less, and the reward's gradient on the image moves that volume's statistics back
    toward real (20 steps of gradient ascent close most of the gap); a reward without real volumes, or beside critics
    that learn, is refused."""
    from scripts.networks.critics import Critic
    from scripts.reward.adversarial import AdversarialCritics
    from scripts.reward.feature_matching import FeatureMatchingReward

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    critics = {"planes": Critic([1, 16, 16], [4, 8], [2, 2], dropout=0.0)}
    files = {"planes": str(tmp_path / "planes.pt")}
    torch.save(critics["planes"].state_dict(), files["planes"])

    def volume():  # a smooth blob whose brightness and size vary between "patients"
        x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in (16, 16, 12)), indexing="ij")
        r2 = (x**2 + y**2) / rng.uniform(0.5, 0.8) + z**2 / rng.uniform(0.6, 0.9)
        return (np.clip(1.2 - r2, 0, 1) * rng.uniform(0.6, 0.9)).astype(np.float32)

    real = [{"image": volume()[None]} for _ in range(12)]
    reward = FeatureMatchingReward(critics, files, {"planes": 1.0}, real)
    held_out = volume()
    flicker = held_out * rng.uniform(0.5, 1.5, (1, 1, 12)).astype(np.float32)  # every axial slice its own gain
    scores_real = [reward(case["image"][0])["reward"] for case in real]
    assert -3.0 < np.mean(scores_real) < -0.3 and max(scores_real) <= 0
    assert reward(flicker)["reward"] < reward(held_out)["reward"] < 0
    image = torch.tensor(flicker, requires_grad=True)
    start = float(reward.critics_reward(image)[0].detach())
    optimizer = torch.optim.Adam([image], lr=0.01)
    for _ in range(20):
        optimizer.zero_grad()
        (-reward.critics_reward(image)[0]).backward()
        optimizer.step()
    end = float(reward.critics_reward(image)[0].detach())
    assert end > start / 4  # most of the way back to real statistics (here about -8 -> -1)
    with pytest.raises(ValueError, match="real volumes"):
        FeatureMatchingReward(critics, files, {"planes": 1.0}, [])
    # critics that learn would move the features the reference statistics were taken with
    with pytest.raises(Gem3dInputError, match="reward_adversarial_steps 0"):
        AdversarialCritics(reward, real, steps=1)


def test_direct_finetune_job_with_feature_matching(tiny, tiny_demo, tmp_path):
    """reward_features.json layered on the reward-backpropagation job: the training reward and the held-out check are
    the feature-matching reward (never above 0), and the job runs its iteration and check end to end."""
    job, models, runs = _adversarial_job(tiny, tmp_path, reward_weights={"slice": 0.5, "planes": 0.5, "volume": 0.0})
    run_bundle([*REWARD, "finetune_reward.json", "finetune_reward_direct.json", "reward_features.json"], job)
    stage = runs / "reward_direct"
    curves = json.load(open(stage / "reward_direct_curves.json"))
    assert [i for i, _ in curves["reward"]] == [1]
    assert all(v <= 0 for k in ("reward", "reward_slice", "reward_planes") for _, v in curves[k])
    record = json.load(open(stage / "reward_validation.json"))["history"]
    assert [i for i, _, _ in record] == [0, 1] and all(r <= 0 for _, r, _ in record)
    assert (models / "volume_reward_direct.pt").is_file() == any(k for _, _, k in record)


def _states(model) -> dict:
    return {n: {k: v.clone() for k, v in model.networks[n].state_dict().items()} for n in ("autoencoder", "unet")}


def test_3d_backend_rollouts_rescore_with_ratio_one_and_a_ppo_update_moves_only_the_controlnet(tiny, tiny_demo):
    """The 3D backend's rollouts: every recorded step re-scored under unchanged weights gives ratio 1, a seed draws
    the same volume again, the pathwise latent is the sampled one and reaches the ControlNet; one PPO update changes
    the ControlNet only (the UNet and the autoencoder frozen, requires_grad False)."""
    parser = parser_with({**tiny, "reward_masks_per_iteration": 1, "reward_samples_per_mask": 2}, REWARD + MEDLORD)
    tuner, policy, model = (parser.get_parsed_content(k) for k in ("fine_tuner", "policy", "medlord_model"))
    assert (
        isinstance(tuner.sampler, VolumeRolloutSampler)
        and tuner.synth is parser.get_parsed_content("synthesizers")["medlord"]
    )
    assert {id(p) for p in tuner.params} == {id(p) for p in policy.parameters()}
    assert not any(p.requires_grad for n in ("autoencoder", "unet") for p in model.networks[n].parameters())
    item = read_datalist(tiny_demo, ["training"])["training"][0]
    trajectory, score, image = tuner.rollout(item, 3)
    assert len(trajectory) == parser.get_parsed_content("medlord_steps") and image.shape == (32, 32, 32)
    for step in trajectory:
        new = tuner.sampler.logprob(step)
        torch.testing.assert_close(torch.exp(new - step.logprob), torch.ones_like(new))
    latent = tuner.sampler.pathwise_latents()
    torch.testing.assert_close(latent.detach(), tuner.sampler.latent, rtol=0, atol=0)
    grads = torch.autograd.grad(latent.sum(), tuner.params, allow_unused=True)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    _, again, image_again = tuner.rollout(item, 3)
    np.testing.assert_array_equal(image_again, image)
    assert again == score
    frozen, before = _states(model), {k: v.clone() for k, v in policy.state_dict().items()}
    engine = Engine(tuner)
    engine.state.iteration = 0
    out = tuner(engine, [item])
    assert out["grad_norm"] > 0 and out["approx_kl"] >= 0 and out["drift"] > 0
    assert any(not torch.equal(v, policy.state_dict()[k]) for k, v in before.items())
    for name, state in frozen.items():
        now = model.networks[name].state_dict()
        assert all(torch.equal(now[k], v) for k, v in state.items()), name


def test_direct_finetune_job_on_the_3d_backend_and_its_switch(tiny, tiny_demo, tmp_path):
    """Reward backpropagation with feature matching on the 3D backend end to end: its curves, the ControlNet file
    written under the starting one's keys; the main job with --medlord_weights reward generates with it and records
    it, an unknown name is refused; the fixed-seed reward of the tuned weights goes to their own file."""
    job, models, runs = _adversarial_job(
        tiny,
        tmp_path,
        reward_val_masks=0,
        reward_function_weight=1.0,
        reward_weights={"slice": 0.5, "planes": 0.5, "volume": 0.0},
    )
    direct = [*REWARD, "finetune_reward.json", "finetune_reward_direct.json", "reward_features.json"]
    run_bundle([*direct, "finetune_reward_medlord.json"], job)
    curves = json.load(open(runs / "reward_medlord" / "reward_medlord_curves.json"))
    assert [i for i, _ in curves["reward"]] == [1] and curves["reward"][0][1] <= 0 and curves["drift"][0][1] > 0
    assert curves["function_drift"][0][1] >= 0
    start = torch.load(models / "medlord_controlnet.pt", weights_only=True)
    tuned = torch.load(models / "medlord_controlnet_reward.pt", weights_only=True)
    assert tuned.keys() == start.keys() and any(not torch.equal(tuned[k], start[k]) for k in start)
    images = {}
    for name in ("default", "reward"):
        out = tmp_path / f"out_{name}"
        run_bundle(["inference.json"], {**job, "backend": "medlord", "medlord_weights": name, "output_dir": str(out)})
        records = sorted((out / "records").glob("*.json"))
        assert records and all(json.load(open(r))["medlord_weights"] == name for r in records)
        images[name] = np.asarray(nib.load(str(sorted((out / "images").glob("*.nii.gz"))[0])).dataobj)
    assert not np.array_equal(images["default"], images["reward"])
    refused = run_bundle(["inference.json"], {**job, "backend": "medlord", "medlord_weights": "rewards"}, check=False)
    assert refused.returncode != 0 and "medlord_weights must be one of ['default', 'reward']" in refused.stderr
    scored = tmp_path / "medlord_reward.json"
    configs = [*REWARD, "finetune_reward.json", "finetune_reward_medlord.json", "evaluate_reward.json"]
    run_bundle(configs, {**job, "medlord_weights": "reward", "reward_eval_repeats": 1, "reward_eval_file": str(scored)})
    naming = parser_with({**job, "medlord_weights": "reward"}, configs)
    assert naming.get_parsed_content("reward_eval_file").endswith("/eval/reward/medlord_reward.json")
    result = json.load(open(scored))
    assert result["weights"] == "reward" and len(result["per_volume"]) == 2 and "real" in result
