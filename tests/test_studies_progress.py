"""``python -m nhl compare`` / ``grid``: an overall bar over the runs (done / total, estimate)
above each run's own training bar; cached runs count as done from the start."""

import re
from types import SimpleNamespace

import pytest

from nhl.cli import main
from nhl.config import TrainConfig
from nhl.studies import grid

CONFIG = TrainConfig(dataset="digits", protocol="quick", epochs=1, bit_list=(8, 16))


def overall_states(err: str) -> list[str]:
    """The ``n/total`` of every drawn state of the overall bar."""
    return re.findall(r"all runs:\s+\d+%\|[^|]*\| (\d+/\d+) \[", err.replace("\r", "\n"))


def test_compare_shows_overall_and_per_run_bars(tmp_path, capsys):
    dirs = {"root": tmp_path / "runs", "data_root": tmp_path / "data"}
    grid.compare(CONFIG, **dirs)  # real training: a nested model and two baselines
    err = capsys.readouterr().err
    states = overall_states(err)
    assert states[0] == "0/3" and states[-1] == "3/3"
    assert "s/run" in err or "run/s" in err  # a rate, hence the estimate of the time left
    for name in ("nested-nhl", "single-8", "single-16"):  # and each run's own bar
        assert f"{CONFIG.method} {name}:" in err
    grid.compare(CONFIG, **dirs)  # everything cached now: done from the start, no training
    err = capsys.readouterr().err
    assert overall_states(err)[0] == "3/3" and "nested-nhl:" not in err


@pytest.fixture
def fake_runs(monkeypatch):
    """experiments.run and the cache look-up replaced: a set of cached configs, a log of runs."""
    cached, trained = set(), []

    def run(config, progress=True, **kw):
        if config not in cached:
            trained.append(config)
            cached.add(config)
        return SimpleNamespace(map={b: 0.5 for b in config.bit_list}, train_seconds=1.0)

    monkeypatch.setattr(grid.experiments, "run", run)
    monkeypatch.setattr(grid.experiments, "cached_run", lambda c, root=None, data_root=None: c if c in cached else None)
    return cached, trained


def test_grid_counts_every_methods_runs(fake_runs, capsys):
    cached, trained = fake_runs
    config = CONFIG
    grid.compare(config.replace(method="csq"), progress=False)  # one method cached
    assert capsys.readouterr().err == "" and len(trained) == 3  # progress=False draws nothing
    table = grid.grid(config, ["csq", "dhn"])
    assert list(table["method"]) == ["csq"] * 2 + ["dhn"] * 2 and len(trained) == 6
    states = overall_states(capsys.readouterr().err)
    assert states[0] == "3/6" and states[-1] == "6/6"  # csq's runs were done from the start


def test_cli_grid_bar_and_no_progress(fake_runs, capsys):
    args = ["grid", "--dataset", "digits", "--quick", "--bits", "8,16", "--methods", "csq,dhn"]
    assert main(args) == 0
    assert overall_states(capsys.readouterr().err)[-1] == "6/6"
    assert main([*args, "--no-progress"]) == 0
    assert "all runs" not in capsys.readouterr().err
