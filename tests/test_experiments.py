"""The experiment cache: keys change exactly when something that affects the result changes."""

import json

import numpy as np
import pytest
from conftest import tiny

from nhl import experiments
from nhl.config import TrainConfig

_config = tiny  # the suite's smallest run (tests/conftest.py)


def test_run_is_cached_and_reloaded(dirs):
    first = experiments.run(_config(), progress=False, **dirs)
    assert not first.cached
    again = experiments.run(_config(), progress=False, **dirs)
    assert again.cached and again.path == first.path
    assert again.metrics == first.metrics
    for key in ("query", "database"):
        assert np.array_equal(again.codes[key], first.codes[key])
    assert set(np.unique(first.codes["query"])) <= {-1, 1}
    assert first.codes["query"].shape[1] == 16
    assert json.loads((first.path / "config.json").read_text())["bit_list"] == [8, 16]
    model = again.model()
    assert model.bit_list == (8, 16)
    table = experiments.list_runs(dirs["root"])
    assert len(table) == 1 and table.loc[0, "map_16"] == first.map[16]


def test_run_key_changes_with_what_affects_the_result():
    base = experiments.run_key(_config(), "split-A", "1.0")
    assert experiments.run_key(_config(), "split-A", "1.0") == base  # same inputs, same key
    assert experiments.run_key(TrainConfig.from_dict(_config().to_dict()), "split-A", "1.0") == base
    assert experiments.run_key(_config(seed=1), "split-A", "1.0") != base
    assert experiments.run_key(_config(lr=2e-3), "split-A", "1.0") != base
    assert experiments.run_key(_config(method="dsh"), "split-A", "1.0") != base
    assert experiments.run_key(_config(hyper={"lam": 0.1}), "split-A", "1.0") != base
    assert experiments.run_key(_config(), "split-B", "1.0") != base  # another data split
    assert experiments.run_key(_config(), "split-A", "1.1") != base  # another package version


def test_split_fingerprint_reaches_the_key(dirs):
    a = experiments.get_splits(_config(), dirs["data_root"])
    b = experiments.get_splits(_config(split_seed=1), dirs["data_root"])
    assert a.fingerprint != b.fingerprint
    assert experiments.run_path(_config(), a.fingerprint) != experiments.run_path(_config(split_seed=1), b.fingerprint)


def test_unfinished_folder_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        experiments.load(tmp_path)
