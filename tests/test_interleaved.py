"""Interleaved timing: every callable once per round in a shuffled order; medians, spreads and
paired speed-ups with a 'within noise' verdict."""

import numpy as np
import pandas as pd
import pytest

from nhl.studies.timing import interleaved_timings, summarize_timings, verdict


def test_rounds_are_interleaved_and_shuffled():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    times = interleaved_timings(fns, repeats=6, warmup=2, seed=1)
    assert calls[:8] == ["a", "a", "b", "b", "c", "c", "d", "d"]  # warm-up, untimed
    timed = calls[8:]
    assert len(timed) == 24 and len(times) == 24
    rounds = [timed[i : i + 4] for i in range(0, 24, 4)]
    assert all(sorted(r) == list("abcd") for r in rounds)  # each once per round
    assert len({tuple(r) for r in rounds}) > 1  # the order changes between rounds
    assert list(times.columns) == ["name", "round", "seconds"]
    assert (times.groupby("round")["name"].nunique() == 4).all()
    assert (times["seconds"] >= 0).all()


def _fake(times_by_name: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"name": n, "round": r, "seconds": s}
                         for n, ts in times_by_name.items() for r, s in enumerate(ts)])


def test_summary_medians_spread_and_verdicts():
    times = _fake({
        "ref": [1.0, 2.0, 1.0, 1.0, 1.5],
        "fast": [0.5, 1.0, 0.5, 0.5, 0.7],  # faster in every round
        "slow": [2.0, 3.0, 2.5, 2.0, 2.0],  # slower in every round
        "same": [1.1, 1.8, 0.9, 1.0, 1.6],  # sometimes faster, sometimes slower
    })
    s = summarize_timings(times, reference="ref", per=10)
    assert list(s.index) == ["ref", "fast", "slow", "same"]
    assert s.loc["ref", "median"] == pytest.approx(1.0 * 1e3 / 10)
    assert s.loc["fast", "low"] == pytest.approx(0.5 * 1e3 / 10)
    assert s.loc["slow", "high"] == pytest.approx(3.0 * 1e3 / 10)
    assert s.loc["fast", "speed-up"] == pytest.approx(2.0)
    assert s.loc["fast", "speed-up low"] == pytest.approx(2.0 / 1.0)
    assert s["vs reference"].to_dict() == {"ref": "reference", "fast": "faster", "slow": "slower",
                                           "same": "within noise"}
    assert (s["rounds"] == 5).all()
    plain = summarize_timings(times)
    assert "speed-up" not in plain.columns and plain.loc["ref", "median"] == pytest.approx(1000.0)


def test_verdict():
    assert verdict(1.2, 3.0) == "faster"
    assert verdict(0.2, 0.9) == "slower"
    assert verdict(0.9, 1.1) == "within noise"
    assert verdict(1.0, 1.0) == "within noise"


def test_real_timings_order_a_clear_difference():
    x = np.random.default_rng(0).random(200_000)
    times = interleaved_timings({"cheap": lambda: x[:10].sum(), "costly": lambda: np.sort(x)},
                                repeats=5)
    s = summarize_timings(times, reference="costly")
    assert s.loc["cheap", "vs reference"] == "faster"


def test_errors():
    with pytest.raises(ValueError, match="non-empty"):
        interleaved_timings({})
    with pytest.raises(TypeError, match="callable"):
        interleaved_timings({"a": 3})
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        interleaved_timings({"a": lambda: None}, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        interleaved_timings({"a": lambda: None}, warmup=-1)
    with pytest.raises(ValueError, match="lacks column"):
        summarize_timings(pd.DataFrame({"name": ["a"]}))
    with pytest.raises(ValueError, match="reference 'b'"):
        summarize_timings(_fake({"a": [1.0]}), reference="b")
