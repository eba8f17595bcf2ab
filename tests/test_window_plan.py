"""The window plan, proven for every small Z and many (n, h, p)."""

import itertools

import pytest
from scripts.errors import Gem3dInputError
from scripts.sampling.window_plan import plan_windows, start_slice, waves


@pytest.mark.parametrize("n,h", [(2, 1), (3, 1), (3, 2), (8, 1), (8, 3), (16, 1), (16, 4), (16, 15)])
def test_plan_covers_every_slice_once(n, h):
    for z_total, p in itertools.product(range(1, 70), (0.0, 0.13, 0.5, 0.77, 1.0)):
        plan = plan_windows(z_total, n, h, p)
        written = [z for w in plan for z in w.new]
        assert sorted(written) == list(range(z_total)), (z_total, n, h, p)
        generated_before: set[int] = set()
        for group in waves(plan):
            for w in group:
                assert 0 <= w.start < w.stop <= z_total
                assert w.stop - w.start == min(n, z_total)  # every window has the trained length
                assert set(w.known) <= generated_before  # known content exists before the window runs
                assert set(w.known) == set(range(w.start, w.stop)) & generated_before  # and none is regenerated
                if w.external_informed:
                    assert w.wave == 0 and w.start <= start_slice(z_total, p) < w.stop
                else:
                    assert w.informed in w.known and len(w.known) >= min(h, z_total)
                    # the informed slice is the generated boundary slice next to the new slices
                    assert w.informed == (max(w.known) if w.direction == "up" else min(w.known))
            for w in group:
                generated_before |= set(w.new)
        # within a wave no two windows write the same slice (they are denoised as one batch)
        for group in waves(plan):
            news = [set(w.new) for w in group]
            assert sum(map(len, news)) == len(set().union(*news))


def test_plan_shapes():
    plan = plan_windows(40, 16, 1, 0.5)
    assert [(w.start, w.stop, w.direction) for w in plan] == [(12, 28, "start"), (24, 40, "up"), (0, 16, "down")]
    assert plan[1].known == (24, 25, 26, 27) and plan[1].informed == 27  # end-aligned: more than h known
    assert len(plan_windows(5, 16, 1, 0.3)) == 1  # shorter than a window: one window of Z slices
    assert len(waves(plan_windows(100, 16, 1, 0.5))) < len(plan_windows(100, 16, 1, 0.5))


@pytest.mark.parametrize(
    "args,match",
    [
        ((0, 16, 1, 0.5), "at least 1"),
        ((10, 4, 4, 0.5), "n > h"),
        ((10, 4, 0, 0.5), "n > h"),
        ((10, 4, 1, 1.5), r"\[0, 1\]"),
        ((10, 4, 1, -0.1), r"\[0, 1\]"),
    ],
)
def test_plan_rejects_bad_parameters(args, match):
    with pytest.raises(Gem3dInputError, match=match):
        plan_windows(*args)
