"""Reading the method grid back from the run cache (nhl.grid): never trains, None when incomplete."""

import numpy as np
import pandas as pd
import pytest

from nhl import experiments, grid, studies
from nhl.config import TrainConfig


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    return dict(root=tmp / "runs", data_root=tmp / "data")


def _config(**kw):
    base = dict(dataset="digits", protocol="quick", method="csq", bit_list=(8, 16), epochs=1, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_grid_configs_lists_nested_then_baselines():
    cfgs = grid.grid_configs(_config(), ["CSQ", "dsh"])
    assert [(c.method, c.kind) for c in cfgs] == [
        ("csq", "nested-nhl"), ("csq", "single-8"), ("csq", "single-16"),
        ("dsh", "nested-nhl"), ("dsh", "single-8"), ("dsh", "single-16"),
    ]


def test_load_grid_is_none_until_every_run_is_cached_then_matches_studies(dirs):
    config = _config()
    assert grid.load_grid(config, ["csq"], **dirs) is None
    assert len(grid.missing_runs(config, ["csq"], **dirs)) == 3
    experiments.run(config, progress=False, **dirs)  # nested only: still incomplete
    assert grid.load_grid(config, ["csq"], **dirs) is None
    assert [c.kind for c in grid.missing_runs(config, ["csq"], **dirs)] == ["single-8", "single-16"]

    trained = studies.grid(config, ["csq"], progress=False, **dirs)
    loaded = grid.load_grid(config, ["csq"], **dirs)
    assert grid.missing_runs(config, ["csq"], **dirs) == []
    assert list(loaded.columns) == list(grid.COLUMNS)
    pd.testing.assert_frame_equal(loaded[list(trained.columns)], trained, check_dtype=False)
    # the gain is nested minus baseline, per length
    np.testing.assert_allclose(loaded["gain"], loaded["nested mAP"] - loaded["baseline mAP"])
    # another method is not in the cache: the whole grid is missing
    assert grid.load_grid(config, ["csq", "dsh"], **dirs) is None
    with pytest.raises(ValueError, match="methods"):
        grid.load_grid(config, [], **dirs)


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
