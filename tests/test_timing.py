"""Step timing and time-to-target (nhl.studies.timing) on tiny inputs."""

import math

import pandas as pd
import pytest

from nhl import experiments
from nhl.config import TrainConfig
from nhl.studies import timing


def _config(**kw):
    base = dict(dataset="digits", protocol="quick", method="csq", bit_list=(8, 16), epochs=1, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _history():
    # two lengths, three epochs; per-epoch seconds are repeated on each length's row
    rows = []
    vals = {8: [0.2, 0.5, 0.4], 16: [0.3, 0.4, 0.7]}
    for e, (tr, ev) in enumerate([(1.0, 0.5), (2.0, 0.5), (3.0, 0.5)]):
        for b in (8, 16):
            rows.append(dict(epoch=e, bits=b, val_map=vals[b][e], train_seconds=tr, eval_seconds=ev))
    return pd.DataFrame(rows)


def test_progress_curve_cumulates_seconds():
    c = timing.progress_curve(_history(), bits=16)
    assert c["seconds"].tolist() == [1.0, 3.0, 6.0]
    assert c["val_map"].tolist() == [0.3, 0.4, 0.7]
    c = timing.progress_curve(_history(), include_eval=True)
    assert c["seconds"].tolist() == [1.5, 4.0, 7.5]
    assert c["val_map"].tolist() == pytest.approx([0.25, 0.45, 0.55])
    with pytest.raises(ValueError, match="bits=32"):
        timing.progress_curve(_history(), bits=32)
    with pytest.raises(ValueError, match="val_map"):
        timing.progress_curve(_history().drop(columns="val_map"))


def test_time_to_target_single_mean_and_joint():
    h = _history()
    assert timing.time_to_target(h, 0.5, bits=8) == 3.0
    assert timing.time_to_target(h, 0.45, bits=None) == 3.0  # mean 0.25, 0.45, 0.55
    assert timing.time_to_target(h, 0.45, include_eval=True) == 4.0
    assert math.isnan(timing.time_to_target(h, 0.9, bits=16))
    # jointly: 8 reaches 0.4 at epochs 1, 2; 16 reaches 0.6 only at epoch 2 -> 6 s
    assert timing.time_to_target(h, {8: 0.4, 16: 0.6}) == 6.0
    # 8 >= 0.5 only at epoch 1, 16 >= 0.6 only at epoch 2: never at once
    assert math.isnan(timing.time_to_target(h, {8: 0.5, 16: 0.6}))
    with pytest.raises(ValueError, match="empty"):
        timing.time_to_target(h, {})


def test_time_steps_on_digits(tmp_path):
    config = _config()
    splits = experiments.get_splits(config, tmp_path / "data")
    table = timing.time_steps(config, splits, variants=("single", "plain", "nhl"), n_steps=3, repeats=2, warmup=1)
    assert table["variant"].tolist() == ["single", "plain", "nhl"]
    assert table["kind"].tolist() == ["single-16", "nested-plain", "nested-nhl"]
    assert (table["step ms"] > 0).all()
    assert (table["min ms"] <= table["step ms"]).all() and (table["step ms"] <= table["max ms"]).all()
    assert table["relative"].iloc[0] == 1.0
    one = timing.time_steps(config, splits, variants=("single-8",), n_steps=1, repeats=1, warmup=0)
    assert one["kind"].tolist() == ["single-8"]
    with pytest.raises(ValueError, match="unknown variant 'single-32'"):
        timing.time_steps(config, splits, variants=("single-32",), n_steps=1)
    with pytest.raises(ValueError, match="n_steps"):
        timing.time_steps(config, splits, n_steps=0)


# ------------------------------------------------------------------ interleaved measurement


def test_steps_per_epoch_matches_fit_batches():
    from nhl.train import _batches

    for n, bs in [(4500, 64), (900, 64), (65, 64), (64, 64), (129, 64), (10, 3)]:
        assert timing.steps_per_epoch(n, bs) == len(_batches(n, bs, 0)), (n, bs)
    with pytest.raises(ValueError, match="batch_size"):
        timing.steps_per_epoch(10, 0)


def test_single_variants_name_every_length():
    assert timing.single_variants(_config(bit_list=(8, 16, 32))) == ["single-8", "single-16", "single-32"]


def test_measure_steps_interleaves_shuffled_and_times_the_head(tmp_path):
    config = _config(method="dhn")  # a memory-bank loss: banks are filled before timing
    splits = experiments.get_splits(config, tmp_path / "data")
    variants = ["single-8", "single-16", "plain", "nhl"]
    st = timing.measure_steps(config, splits, variants, n_steps=2, repeats=3, warmup=1, parts=True, seed=3)
    raw = st.raw
    assert len(raw) == 3 * len(variants) and st.repeats == 3
    assert sorted(raw["order"].unique().tolist()) == [0, 1, 2, 3]
    orders = [tuple(raw[raw["repeat"] == r].sort_values("order")["variant"]) for r in range(3)]
    assert all(sorted(o) == sorted(variants) for o in orders)
    assert len(set(orders)) > 1  # shuffled per repeat (seed 3)
    assert (raw["head s"] > 0).all() and (raw["head s"] < raw["step s"] * 5).all()
    table = st.table
    assert table["variant"].tolist() == variants
    assert {"head ms", "rest ms", "relative"} <= set(table.columns)
    assert table["rest ms"].to_numpy() == pytest.approx((table["step ms"] - table["head ms"]).to_numpy())
    sp = st.speedup(["single-8", "single-16"], ["plain", "nhl"])
    assert sp.index.tolist() == ["plain", "nhl"]
    assert (sp["min"] <= sp["median"]).all() and (sp["median"] <= sp["max"]).all()
    with pytest.raises(ValueError, match="not measured"):
        st.speedup(["single-32"], "nhl")
    with pytest.raises(ValueError, match="repeat"):
        timing.measure_steps(config, splits, ["nhl", "nhl"], n_steps=1)
    with pytest.raises(ValueError, match="warmup"):
        timing.measure_steps(config, splits, ["nhl"], n_steps=1, warmup=-1)


def test_speedup_is_computed_within_each_repeat():
    raw = pd.DataFrame({
        "repeat": [0, 0, 0, 1, 1, 1],
        "order": [0, 1, 2, 0, 1, 2],
        "variant": ["a", "b", "n"] * 2,
        "kind": ["single-8", "single-16", "nested-nhl"] * 2,
        "step s": [1.0, 1.0, 1.0, 2.0, 2.0, 4.0],  # the machine was twice as slow in repeat 1
    })
    st = timing.StepTimes(raw, ("a", "b", "n"), n_steps=1, batch_size=4, threads=1)
    sp = st.speedup(["a", "b"], "n").loc["n"]
    assert (sp["min"], sp["max"], sp["median"]) == (1.0, 2.0, 1.5)
    assert sp["of medians"] == pytest.approx((1.5 + 1.5) / 2.5)
    assert "head ms" not in st.table.columns


def test_time_evaluation_run_costs_and_speedups(tmp_path):
    config = _config(method="dhn")
    splits = experiments.get_splits(config, tmp_path / "data")
    ev = timing.time_evaluation(config, splits, ["single-8", "single-16", "nhl"], repeats=1)
    assert ev["variant"].tolist() == ["single-8", "single-16", "nhl"]
    assert ev["lengths"].tolist() == [1, 1, 2]
    assert (ev["refresh s"] > 0).all()  # DHN keeps a bank
    assert (ev["val s"] == ev["val encode s"] + ev["val mAP s"]).all()
    steps = pd.DataFrame({"variant": ["single-8", "single-16", "plain", "nhl"],
                          "kind": ["single-8", "single-16", "nested-plain", "nested-nhl"],
                          "step ms": [10.0, 10.0, 12.0, 15.0]})
    costs = timing.run_costs(steps, ev, n_steps_per_epoch=4, epochs=3, n_test=1000)
    assert costs.loc["nhl", "train s / epoch"] == pytest.approx(0.06)
    assert costs.loc["plain", "val s / epoch"] == costs.loc["nhl", "val s / epoch"]  # nested rows share
    row = costs.loc["single-8"]
    assert row["run s"] == pytest.approx(3 * (row["train s / epoch"] + row["val s / epoch"]) + row["refresh s"])
    ratios = timing.cost_speedups(costs, ["single-8", "single-16"], "nhl")
    assert ratios["train s / epoch"] == pytest.approx(20 / 15)
    with pytest.raises(ValueError, match="no evaluation timing"):
        timing.run_costs(steps.assign(variant=["single-32", "single-16", "plain", "nhl"],
                                      kind=["single-32", "single-16", "nested-plain", "nested-nhl"]),
                         ev[ev["variant"] != "single-8"], 4, 3, 1000)


def test_csq_has_no_bank_to_refresh(tmp_path):
    config = _config()
    splits = experiments.get_splits(config, tmp_path / "data")
    ev = timing.time_evaluation(config, splits, ["single-8"], repeats=1)
    assert ev["refresh s"].tolist() == [0.0]


def test_epochs_to_target_and_targets_table():
    h = _history()
    assert timing.epochs_to_target(h, 0.5, bits=8) == 2.0
    assert timing.epochs_to_target(h, 0.2, bits=8) == 1.0
    assert timing.epochs_to_target(h, {8: 0.4, 16: 0.6}) == 3.0
    assert math.isnan(timing.epochs_to_target(h, 0.9, bits=16))
    single = {8: _history()[lambda d: d["bits"] == 8], 16: _history()[lambda d: d["bits"] == 16]}
    t = timing.epochs_to_targets(h, single, fraction=0.9)
    assert t.index.tolist() == [8, 16]
    assert t.loc[8, "target"] == pytest.approx(0.45) and t.loc[16, "target"] == pytest.approx(0.63)
    assert t.loc[8, "single epochs"] == 2.0 and t.loc[16, "nested epochs"] == 3.0
    with pytest.raises(ValueError, match="fraction"):
        timing.epochs_to_targets(h, single, fraction=0)


def _study(train_s, epochs, nested_s, nested_epochs, seeds=(0, 1)):
    """A converged study table: K = len(train_s) single runs and one full NHL run per seed
    (a nested run has one row per length), with recorded seconds and epochs."""
    bits = [8, 16, 32, 64, 128][: len(train_s)]
    rows = []
    for seed in seeds:
        scale = 1 + seed  # seed 1: everything twice as slow (the ratios stay)
        for b, s, e in zip(bits, train_s, epochs):
            rows.append(dict(dataset="d", method="m", variant="single", seed=seed, bits=b,
                             **{"train s": scale * s, "epochs trained": e, "full NHL": False}))
        for b in bits:
            rows.append(dict(dataset="d", method="m", variant="nhl", seed=seed, bits=b,
                             **{"train s": scale * nested_s, "epochs trained": nested_epochs,
                                "full NHL": True}))
    return pd.DataFrame(rows)


def test_converged_speedup_takes_the_ratio_apart():
    from nhl.studies import claims

    # equal epochs (10), a single epoch costs 1 s, the nested one 1.25 s: 5 / 1.25 = 4 = per epoch
    t = _study([10.0] * 5, [10] * 5, 12.5, 10)
    row = timing.converged_speedup(t).iloc[0]
    assert row["K"] == 5 and row["seeds"] == 2
    assert row["speed-up"] == pytest.approx(4.0) and row["per epoch"] == pytest.approx(4.0)
    assert row["epochs"] == pytest.approx(1.0)
    assert row["speed-up"] == pytest.approx(claims.speedup(t)["speed-up"].iloc[0])
    # the nested run stops after 5 epochs instead of 10: twice the speed-up, beyond K
    t = _study([10.0] * 5, [10] * 5, 6.25, 5)
    row = timing.converged_speedup(t).iloc[0]
    assert row["speed-up"] == pytest.approx(8.0) and row["per epoch"] == pytest.approx(4.0)
    assert row["epochs"] == pytest.approx(2.0)
    assert row["single epochs"] == 10 and row["nested epochs"] == 5
    assert row["speed-up"] == pytest.approx(claims.speedup(t)["speed-up"].iloc[0])


def test_converged_speedup_errors():
    with pytest.raises(ValueError, match="train s"):
        timing.converged_speedup(pd.DataFrame({"dataset": ["d"]}))
    t = _study([1.0, 1.0], [2, 2], 1.0, 2)
    with pytest.raises(ValueError, match="no dataset and method"):
        timing.converged_speedup(t[t["variant"] == "single"])
