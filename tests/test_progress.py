"""Progress lines (kwslib.progress): elapsed time and an estimate of what remains."""
import pytest

from kwslib.errors import ConfigError
from kwslib.progress import Progress, duration


def test_duration():
    assert duration(0) == "0 s" and duration(42.4) == "42 s" and duration(75) == "1 min 15 s"
    assert duration(3725) == "1 h 02 min"
    with pytest.raises(ConfigError):
        duration(-1)


def test_estimate_is_mean_unit_time_times_units_left():
    t = [100.0]
    lines = []
    p = Progress(4, "stage 1", log=lines.append, clock=lambda: t[0])
    t[0] += 30
    assert p.step("replicate 0 stage1_w8") == "[stage 1 1/4] replicate 0 stage1_w8 | 30 s elapsed, ~1 min 30 s left"
    t[0] += 50  # mean 40 s, 2 left
    assert p.step("b").endswith("| 1 min 20 s elapsed, ~1 min 20 s left")
    t[0] += 1
    assert p.step("c", reused=True) == "[stage 1 3/4] c (reused) | 1 min 21 s elapsed, ~40 s left"
    t[0] += 40
    assert p.step("d").endswith("2 min 01 s elapsed, done")
    assert len(lines) == 4


def test_no_estimate_before_a_timed_unit_and_bad_total():
    t = [0.0]
    p = Progress(3, "x", log=None, clock=lambda: t[0])
    assert p.remaining_seconds() is None
    assert p.step("a", reused=True).endswith("| 0 s elapsed")
    with pytest.raises(ConfigError, match="total must be an integer >= 1"):
        Progress(0, "x")


def test_thinned_passes_every_nth_epoch_the_last_and_other_lines():
    from kwslib.progress import thinned

    got = []
    log = thinned(got.append, 10, "replicate 1: ")
    for e in range(1, 26):
        log(f"epoch {e:3d}/25  loss 1.0  (0.5s; ~3s left)")
    log("augmentation bank: version 1/4 of 20 clips (1s; ~3s left)")
    assert [g.split()[3] for g in got[:-1]] == ["10/25", "20/25", "25/25"]
    assert got[-1] == "replicate 1: augmentation bank: version 1/4 of 20 clips (1s; ~3s left)"
    assert thinned(None, 10) is None
    with pytest.raises(ConfigError):
        thinned(print, 0)
