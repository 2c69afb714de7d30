"""Reading the method grid back from the run cache (nhl.studies.grid): never trains, None when incomplete."""

import numpy as np
import pandas as pd
import pytest
from conftest import tiny

from nhl import experiments
from nhl.config import TrainConfig
from nhl.metrics import chance_map
from nhl.studies import grid, statistics

_config = tiny  # the suite's smallest run (tests/conftest.py)


def test_comparison_configs_lists_nested_then_baselines():
    cfgs = grid.comparison_configs(_config(), ["CSQ", "dsh"])
    assert [(c.method, c.kind) for c in cfgs] == [
        ("csq", "nested-nhl"), ("csq", "single-8"), ("csq", "single-16"),
        ("dsh", "nested-nhl"), ("dsh", "single-8"), ("dsh", "single-16"),
    ]


def test_load_grid_is_none_until_every_run_is_cached_then_matches_studies(module_dirs):
    config = _config()
    assert grid.load_grid(config, ["csq"], **module_dirs) is None
    assert len(grid.missing_runs(config, ["csq"], **module_dirs)) == 3
    experiments.run(config, progress=False, **module_dirs)  # nested only: still incomplete
    assert grid.load_grid(config, ["csq"], **module_dirs) is None
    assert [c.kind for c in grid.missing_runs(config, ["csq"], **module_dirs)] == ["single-8", "single-16"]

    trained = grid.grid(config, ["csq"], progress=False, **module_dirs)
    loaded = grid.load_grid(config, ["csq"], **module_dirs)
    assert grid.missing_runs(config, ["csq"], **module_dirs) == []
    assert list(loaded.columns) == list(grid.COLUMNS)
    pd.testing.assert_frame_equal(loaded[list(trained.columns)], trained, check_dtype=False)
    # the gain is nested minus baseline, per length
    np.testing.assert_allclose(loaded["gain"], loaded["nested mAP"] - loaded["baseline mAP"])
    # another method is not in the cache: the whole grid is missing
    assert grid.load_grid(config, ["csq", "dsh"], **module_dirs) is None
    with pytest.raises(ValueError, match="methods"):
        grid.load_grid(config, [], **module_dirs)


def _toy_grid():
    return pd.DataFrame(
        {
            "method": ["a", "a", "b", "b"],
            "bits": [16, 8, 8, 16],
            "baseline mAP": [0.5, 0.4, 0.2, 0.4],
            "nested mAP": [0.6, 0.3, 0.3, 0.4],
            "gain": [0.1, -0.1, 0.1, 0.0],
            "baseline s": [1.0, 1.0, 2.0, 2.0],
            "nested s": [1.0, 1.0, 2.0, 2.0],
            "speed-up": [2.0, 2.0, 2.0, 2.0],
        }
    )


def test_gain_table_pivots_sorted_with_margins():
    t = grid.gain_table(_toy_grid())
    assert list(t.index) == ["a", "b", "mean"]
    assert list(t.columns) == [8, 16, "mean"]
    np.testing.assert_allclose(t.loc["a"].to_numpy(), [-0.1, 0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(t.loc["b"].to_numpy(), [0.1, 0.0, 0.05], atol=1e-12)
    np.testing.assert_allclose(t.loc["mean"].to_numpy(), [0.0, 0.05, 0.025], atol=1e-12)
    plain = grid.gain_table(_toy_grid(), value="nested mAP", margins=False)
    assert plain.shape == (2, 2) and plain.loc["a", 8] == 0.3
    with pytest.raises(ValueError, match="value"):
        grid.gain_table(_toy_grid(), value="nope")


def test_summary_numbers():
    s = grid.summary(_toy_grid())
    assert s["average gain"] == pytest.approx(0.025)
    assert s["cells improved"] == pytest.approx(0.5)
    # relative gains: 0.1/0.5, -0.1/0.4, 0.1/0.2, 0 -> mean 0.1125 -> 11.25 %
    assert s["relative gain %"] == pytest.approx(11.25)
    assert s["mean speed-up"] == 2.0 and s["n methods"] == 2


# ------------------------------------------------------------------ the committed grid table
def _long_grid():
    """Long table (study schema) with known gains: a gains 0.1 everywhere, b loses 0.05 at 8."""
    rows = []
    for dataset, scale in (("d1", 1.0), ("d2", 0.5)):
        for method, (single, nested) in {"a": (0.5, 0.6), "b": (0.4, 0.4)}.items():
            for bits in (8, 16):
                n = nested - (0.05 if (method == "b" and bits == 8) else 0.0)
                rows.append(dict(dataset=dataset, method=method, variant="single", seed=0, bits=bits,
                                 mAP=scale * single, **{"train s": 1.0}))
                rows.append(dict(dataset=dataset, method=method, variant="nhl", seed=0, bits=bits,
                                 mAP=scale * n, **{"train s": 2.0}))
    return pd.DataFrame(rows)


def test_chance_map_of_a_dataset_is_the_exact_chance_level_of_its_split(module_dirs):
    splits = experiments.get_splits(_config(protocol=None), module_dirs["data_root"])
    got = statistics.chance_map("digits", data_root=module_dirs["data_root"])
    assert got == pytest.approx(chance_map(splits.query.labels, splits.database.labels))
    q, db = splits.query.labels.double(), splits.database.labels.double()
    share = float(q.mean(0) @ db.mean(0))  # relevant share R / N, what a random order averages near
    assert got == pytest.approx(share, abs=0.01) and 0.05 < share < 0.15  # ten balanced classes


def test_chance_map_multilabel_is_near_the_share_of_relevant_items():
    splits = experiments.get_splits(TrainConfig(dataset="fashion-mnist-multilabel", protocol="quick"))
    q, db = splits.query.labels.double(), splits.database.labels.double()
    share = float(((q @ db.T) > 0).double().mean())
    got = statistics.chance_map("fashion-mnist-multilabel", protocol="quick")
    assert got == pytest.approx(chance_map(splits.query.labels, splits.database.labels))
    assert got == pytest.approx(share, abs=0.01)
    assert statistics.chance_map("fashion-mnist-multilabel", protocol="quick", topk=50) == pytest.approx(
        chance_map(splits.query.labels, splits.database.labels, topk=50))


def test_collapse_check_flags_cells_near_chance():
    t = _long_grid()
    out = grid.collapse_check(t, {"d1": 0.1, "d2": 0.1})
    assert list(out.index) == ["d1", "d2"]
    assert out.loc["d1", "cells below 2 x chance"] == 0
    assert out.loc["d2", "cells below 2 x chance"] == 1  # b nested at 8 bits: 0.175 < 0.2
    wide = grid.collapse_check(t, {"d1": 0.1, "d2": 0.1}, factor=2.5)
    assert wide.loc["d2", "cells below 2.5 x chance"] == 4  # every cell of b (<= 0.2 < 0.25)
    assert out.loc["d2", "lowest mAP"] == pytest.approx(0.175)
    assert out.loc["d2", "lowest cell"] == "b nhl 8 bits"
    assert out.loc["d1", "lowest / chance"] == pytest.approx(3.5)
    with pytest.raises(ValueError, match="chance level"):
        grid.collapse_check(t, {"d1": 0.1})
    with pytest.raises(ValueError, match="factor"):
        grid.collapse_check(t, {"d1": 0.1, "d2": 0.1}, factor=1.0)
    with pytest.raises(ValueError, match="columns"):
        grid.collapse_check(t.drop(columns="variant"), {"d1": 0.1, "d2": 0.1})


def test_average_gain_absolute_and_relative():
    out = grid.average_gain(_long_grid())
    r = out.loc["d1"]
    # cells: a +0.1 (x2, single 0.5), b -0.05 at 8 bits and 0 at 16 (single 0.4)
    assert r["average gain (mAP)"] == pytest.approx((0.1 + 0.1 - 0.05 + 0.0) / 4)
    assert r["relative gain (%)"] == pytest.approx(100 * (0.2 + 0.2 - 0.125 + 0.0) / 4)
    assert r["gain of the averages (%)"] == pytest.approx(100 * (0.4875 / 0.45 - 1))
    assert r["cells improved"] == "2 of 4" and r["methods"] == 2
    # the relative numbers do not depend on the scale of mAP
    assert out.loc["d2", "relative gain (%)"] == pytest.approx(r["relative gain (%)"])
    two_seeds = pd.concat([_long_grid(), _long_grid().assign(seed=1)])
    with pytest.raises(ValueError, match="one seed"):
        grid.average_gain(two_seeds)


def test_describe_gain_names_the_extremes():
    gains = grid.gain_table(_toy_grid())
    text = grid.describe_gain(gains, "toy")
    assert text.startswith("toy: average gain +0.0250")
    assert "from +0.0000 (8 bits) to +0.0500 (16 bits)" in text
    assert "1 of 2 methods gain on average, most b (+0.0500), least a (+0.0000)" in text
    with pytest.raises(ValueError, match="margins"):
        grid.describe_gain(grid.gain_table(_toy_grid(), margins=False))
