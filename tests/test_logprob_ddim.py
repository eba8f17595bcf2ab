"""Log-probabilities of stochastic DDIM steps (reward fine-tuning): same draws as MONAI's DDIM, closed-form Gaussian
densities, ratio 1 when a stored step is re-scored with unchanged weights."""

import math

import pytest
import torch
from monai.networks.schedulers import DDIMScheduler
from scripts.sampling.logprob_ddim import LogProbDDIMScheduler

SCHEDULE = dict(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015, beta_end=0.0205)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_step_matches_monai_and_the_closed_form_density(prediction_type):
    kw = dict(clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type, **SCHEDULE)
    ours, ref = LogProbDDIMScheduler(**kw), DDIMScheduler(**kw)
    for s in (ours, ref):
        s.set_timesteps(20)
    x = torch.randn(3, 4, 6, 6)
    out = torch.randn(3, 4, 6, 6)
    eta = 0.8
    for t in (int(ours.timesteps[0]), int(ours.timesteps[10]), int(ours.timesteps[-1])):
        prev, logp = ours.step_with_logprob(out, t, x, eta, torch.Generator().manual_seed(5))
        expected, _ = ref.step(out, t, x, eta, torch.Generator().manual_seed(5))
        torch.testing.assert_close(prev, expected)  # the same policy and the same draw as MONAI's sampler
        # closed form: mean = MONAI's eta-0 direction rescaled; sigma from the DDIM variance; density of N(mean, sigma)
        noise = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
        prev_t = t - 1000 // 20  # MONAI's own step size
        sigma = eta * ref._get_variance(t, prev_t) ** 0.5
        mean = expected - sigma * noise
        gauss = torch.distributions.Normal(mean, sigma).log_prob(prev).flatten(1).mean(1)
        torch.testing.assert_close(logp, gauss, rtol=1e-5, atol=1e-5)
        # the density peaks at the mean: a sample farther away scores lower
        _, at_mean = ours.step_with_logprob(out, t, x, eta, prev_sample=mean)
        assert (at_mean > logp).all()
        assert torch.allclose(at_mean, torch.full_like(at_mean, -math.log(float(sigma)) - 0.5 * math.log(2 * math.pi)))


def test_rescoring_a_stored_step_gives_ratio_one_and_moves_with_the_weights():
    sched = LogProbDDIMScheduler(
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction", **SCHEDULE
    )
    sched.set_timesteps(10)
    net = torch.nn.Conv2d(4, 4, 3, padding=1)
    x = torch.randn(2, 4, 8, 8)
    t = int(sched.timesteps[3])
    with torch.no_grad():
        prev, old = sched.step_with_logprob(net(x), t, x, 1.0, torch.Generator().manual_seed(1))
    _, new = sched.step_with_logprob(net(x), t, x, 1.0, prev_sample=prev)
    torch.testing.assert_close(torch.exp(new - old), torch.ones(2))
    new.mean().backward()  # differentiable in the weights (what PPO trains)
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0
    with torch.no_grad():
        net.weight.add_(0.05)
    _, moved = sched.step_with_logprob(net(x), t, x, 1.0, prev_sample=prev)
    assert not torch.allclose(torch.exp(moved - old), torch.ones(2))
    with pytest.raises(ValueError, match="eta > 0"):
        sched.step_with_logprob(net(x), t, x, 0.0)
    final = LogProbDDIMScheduler(clip_sample=False, prediction_type="v_prediction", **SCHEDULE)  # alpha_0 := 1
    final.set_timesteps(10)
    with pytest.raises(ValueError, match="steps_offset=1"):
        final.step_with_logprob(net(x), int(final.timesteps[-1]), x, 1.0)


def test_step_mean_is_the_draws_mean_with_the_closed_form_slope():
    """Reward backpropagation moves a drawn x_(t-1) = mean + sigma * noise with its mean: the mean is the draw's,
    and its derivative in a v-prediction is -sqrt(ab_prev) sqrt(1 - ab_t) + sqrt(1 - ab_prev - sigma^2) sqrt(ab_t)."""
    kw = dict(clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction", **SCHEDULE)
    sched = LogProbDDIMScheduler(**kw)
    sched.set_timesteps(10)
    x = torch.randn(2, 4, 5, 5)
    v = torch.randn(2, 4, 5, 5, requires_grad=True)
    t = int(sched.timesteps[4])
    prev, _ = sched.step_with_logprob(v.detach(), t, x, 1.0, torch.Generator().manual_seed(2))
    mean, sigma = sched.step_mean(v, t, x, 1.0)
    noise = torch.randn(v.shape, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(prev, mean.detach() + sigma * noise)
    mean.sum().backward()
    ab_t, ab_prev = sched.alphas_cumprod[t], sched.alphas_cumprod[t - 100]
    slope = -(ab_prev**0.5) * (1 - ab_t) ** 0.5 + (1 - ab_prev - sigma**2) ** 0.5 * ab_t**0.5
    torch.testing.assert_close(v.grad, torch.full_like(v, float(slope)))
