"""Committed result tables: studies run in parallel, tables and stamps written, summaries."""

import json

import numpy as np
import pandas as pd
import pytest

from nhl.config import TrainConfig
from nhl.studies import catalogue, grid, results, runner, statistics


def _tiny(**kw):
    base = dict(dataset="digits", protocol="quick", bit_list=(8, 16), epochs=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture()
def tiny_study(monkeypatch):
    def configs():
        out = []
        for s in (0, 1):
            nested = _tiny(method="csq", seed=s)
            out += [nested, nested.variant("plain"), *(nested.baseline(b) for b in nested.bit_list)]
        return out

    study = catalogue.Study("tiny", "two seeds of a tiny grid", configs)
    monkeypatch.setitem(catalogue.STUDIES, "tiny", study)
    # the code of a clean checkout at a known commit (the developer's tree may be dirty)
    monkeypatch.setattr(runner, "code_state", lambda diff=False: {"commit": "c0ffee", "dirty": []})
    return study


@pytest.mark.slow
def test_run_study_writes_table_and_stamp(tmp_path, tiny_study):
    dirs = dict(root=tmp_path / "runs", data_root=tmp_path / "data", out=tmp_path / "results")
    tables = runner.run_study(["tiny"], workers=2, threads=1, progress=False, **dirs)
    table = tables["tiny"]
    assert len(table) == 2 * (2 + 2 + 2)  # per seed: nested nhl and plain (2 lengths), 2 baselines
    assert set(table["variant"]) == {"nhl", "plain", "single"}
    assert table["mAP"].between(0, 1).all()
    again = results.load("tiny", dirs["out"])
    pd.testing.assert_frame_equal(again[["mAP"]], table[["mAP"]], atol=1e-6)
    stamp = results.stamp("tiny", dirs["out"])
    assert stamp["command"] == "python -m nhl study tiny" and len(stamp["configs"]) == 8
    assert stamp["threads per worker"] == 1 and stamp["package_version"]
    assert stamp["code"]["commit"] == "c0ffee"
    assert sum(stamp["runs trained by commit"].values()) == 8  # each run says what trained it
    assert "results/tiny.csv" in results.describe_source("tiny", dirs["out"])
    # the same study again loads every run from the cache and gives the same numbers
    second = runner.run_study(["tiny"], workers=1, progress=False, **dirs)["tiny"]
    assert np.array_equal(second["mAP"].to_numpy(), table["mAP"].to_numpy())
    cells = grid.as_grid(table[table.seed == 0])
    assert list(cells.columns[:4]) == ["method", "bits", "baseline mAP", "nested mAP"]
    assert np.allclose(cells["gain"], cells["nested mAP"] - cells["baseline mAP"])
    # verify: a sample re-trained from scratch (a fresh cache) reproduces the committed numbers
    report = runner.verify("tiny", sample=2, threads=1, workers=1, data_root=dirs["data_root"],
                           folder=dirs["out"], progress=False)
    assert 2 <= len(report) <= 4  # two runs of one or two lengths
    assert report["same"].all() and report["mAP committed"].notna().all()
    from nhl.cli import main

    code = main(["study", "verify", "tiny", "--sample", "1", "--workers", "1", "--out",
                 str(dirs["out"]), "--data", str(dirs["data_root"])])
    assert code == 0


def test_a_study_refuses_code_that_differs_from_its_commit(tmp_path, tiny_study, monkeypatch):
    monkeypatch.setattr(runner, "code_state", lambda diff=False: {
        "commit": "c0ffee", "dirty": ["nhl/losses/dhn.py"], "diff": "--- a/nhl/losses/dhn.py"})
    with pytest.raises(runner.DirtyCodeError, match="nhl/losses/dhn.py"):
        runner.run_study(["tiny"], root=tmp_path / "runs", data_root=tmp_path / "data",
                         out=tmp_path / "results", progress=False)
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()  # nothing trained


def test_code_state_names_a_commit_or_says_why_not():
    from nhl.utils import code_state

    state = code_state()
    if state["commit"] is None:  # an installed copy, or no git: the version identifies the code
        assert "package_version" in state["note"]
    else:
        assert len(state["commit"]) == 40 and isinstance(state["dirty"], list)
        assert all(p.startswith(("nhl", "pyproject.toml")) for p in state["dirty"])


def test_paired_differences_with_confidence_interval():
    rows = []
    for seed, (a, b) in enumerate([(0.50, 0.40), (0.62, 0.50), (0.55, 0.47)]):
        for bits in (8, 16):
            rows.append(dict(dataset="d", method="m", seed=seed, bits=bits, variant="nhl", mAP=a))
            rows.append(dict(dataset="d", method="m", seed=seed, bits=bits, variant="single", mAP=b))
    out = statistics.paired(pd.DataFrame(rows), "nhl", "single")
    row8 = out[out.bits == 8].iloc[0]
    d = np.array([0.10, 0.12, 0.08])
    assert row8["diff"] == pytest.approx(d.mean()) and row8["n"] == 3
    assert row8["ci95"] == pytest.approx(4.302653 * d.std(ddof=1) / np.sqrt(3), rel=1e-5)
    assert row8["sign"] == "+"
    assert set(out.bits) == {8, 16, "mean"}
    with pytest.raises(ValueError, match="lacks variant"):
        statistics.paired(pd.DataFrame(rows), "weighting", "single")


def test_firing_rates_one_row_per_run():
    rows = [dict(dataset="d", method="m", variant=v, seed=s, bits=b, firing=f)
            for v, f in (("nhl", 0.2), ("weighting", 0.4), ("plain", 0.0))
            for s in (0, 1) for b in (8, 16)]
    out = statistics.firing_rates(pd.DataFrame(rows)).set_index("variant")
    assert set(out.index) == {"nhl", "weighting"} and out.loc["weighting", "mean"] == pytest.approx(0.4)


def test_study_definitions_are_consistent():
    assert json.dumps(catalogue.STUDY_EPOCHS)
    grid = catalogue.grid_configs()
    assert len(grid) == len(catalogue.GRID_DATASETS) * 8 * 6
    ab = catalogue.ablation_configs()
    assert {c.kind for c in ab} == {f"nested-{v}" for v in catalogue.VARIANTS}
    assert all(c.epochs == catalogue.GRID_EPOCHS[c.dataset] for c in grid)
    assert all(c.epochs == catalogue.STUDY_EPOCHS[c.dataset] for c in ab)
    with pytest.raises(FileNotFoundError, match="python -m nhl study nope"):
        results.load("nope")


@pytest.mark.slow
def test_get_prefers_the_cache_and_falls_back_to_the_committed_table(tmp_path, tiny_study, monkeypatch):
    dirs = dict(root=tmp_path / "runs", data_root=tmp_path / "data")
    out = tmp_path / "results"
    runner.run_study(["tiny"], workers=1, progress=False, out=out, **dirs)
    table, source = results.get("tiny", **dirs)
    assert "run cache" in source and len(table) == 12
    monkeypatch.setenv("NHL_RESULTS", str(out))
    fallback, source = results.get("tiny", root=tmp_path / "empty", data_root=dirs["data_root"])
    assert "results/tiny.csv" in source and "8 of 8 runs are not" in source
    assert np.allclose(fallback["mAP"], table["mAP"], atol=1e-6)


def test_a_study_extended_by_one_dataset_keeps_the_other_rows_and_both_commands(tmp_path):
    def cfg(dataset, seed):
        return json.dumps({"dataset": dataset, "epochs": 5, "seed": seed})

    def part(dataset, value):
        return pd.DataFrame({"dataset": dataset, "seed": [0, 1], "bits": 8, "mAP": value})

    first = {"study": "s", "what": "w", "command": "python -m nhl study s", "date": "2026-12-03T00:00:00+00:00",
             "package_version": "0", "machine": {}, "workers": 2, "threads per worker": 1,
             "wall seconds (all studies of this command)": 10.0,
             "train seconds (sum over this study's runs)": 8.0,
             "configs": [cfg("a", 0), cfg("a", 1), cfg("b", 0), cfg("b", 1)]}
    results.write("s", pd.concat([part("a", 0.5), part("b", 0.1)]), first, tmp_path)
    new = dict(first, command="python -m nhl study s --datasets b,c", date="2026-12-04T00:00:00+00:00",
               configs=[cfg("b", 0), cfg("c", 0)])
    new["train seconds (sum over this study's runs)"] = 3.0
    table, stamp = runner._merge_part("s", pd.concat([part("b", 0.9), part("c", 0.7)]), new, ["b", "c"],
                                       tmp_path)
    assert table.groupby("dataset")["mAP"].first().to_dict() == {"a": 0.5, "b": 0.9, "c": 0.7}
    assert [p["datasets"] for p in stamp["parts"]] == [["a"], ["b", "c"]]
    assert stamp["command"] == ("python -m nhl study s (a) ; python -m nhl study s --datasets b,c (b, c)")
    assert [json.loads(c)["dataset"] for c in stamp["configs"]] == ["a", "a", "b", "c"]
    assert stamp["date"].startswith("2026-12-04")
    # the first part's seconds also counted the replaced runs of b: no longer a sum for this table
    assert stamp["parts"][0]["train seconds (sum over this study's runs)"] is None
    assert stamp["train seconds (sum over this study's runs)"] is None
    table, stamp = runner._merge_part("s", part("c", 0.7), dict(new, configs=[cfg("c", 0)]), ["c"], tmp_path)
    assert stamp["train seconds (sum over this study's runs)"] == 11.0  # a, b kept whole: 8 + 3
    with pytest.raises(ValueError, match="dataset"):
        runner.run_study(["seeds"], datasets=["no-such-set"], progress=False, out=tmp_path)
