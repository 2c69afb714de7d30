"""A damaged run folder or checkpoint never strands anyone: loading names the folder and what is
wrong, `experiments.run` retrains with a warning, and a checkpoint carrying pickled objects is
rejected, not executed."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import tiny

from nhl import experiments
from nhl.train import CHECKPOINT, CheckpointError, fit, load_checkpoint

_config = tiny  # the suite's smallest run (tests/conftest.py)


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _garbage_json(path):
    path.write_text('{"map": {"8": 0.5, ')


DAMAGE = {
    "unreadable metrics.json": ("metrics.json", _garbage_json, "metrics.json is not valid JSON"),
    "unreadable config.json": ("config.json", _garbage_json, "config.json is not valid JSON"),
    "truncated codes.npz": ("codes.npz", _truncate, "codes.npz cannot be read"),
    "truncated model.pt": ("model.pt", _truncate, "model.pt cannot be read"),
    "missing history.csv": ("history.csv", os.remove, "missing history.csv"),
    "missing codes.npz": ("codes.npz", os.remove, "missing codes.npz"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_run_is_named_then_retrained(dirs, kind):
    first = experiments.run(_config(), progress=False, **dirs)
    name, damage, message = DAMAGE[kind]
    damage(first.path / name)
    with pytest.raises(experiments.DamagedRunError, match=message) as info:
        experiments.load(first.path)
    assert str(first.path) in str(info.value)
    with pytest.warns(UserWarning, match=f"{first.path}.*{message}.*training it again"):
        again = experiments.run(_config(), progress=False, **dirs)
    assert not again.cached and again.path == first.path
    assert again.metrics["map"] == first.metrics["map"]  # retrained to the same numbers
    assert np.array_equal(again.codes["database"], first.codes["database"])
    assert experiments.run(_config(), progress=False, **dirs).cached  # and healthy again


def test_list_runs_skips_a_damaged_folder(dirs):
    good = experiments.run(_config(), progress=False, **dirs)
    bad = experiments.run(_config(seed=1), progress=False, **dirs)
    _garbage_json(bad.path / "metrics.json")
    with pytest.warns(UserWarning, match="damaged"):
        table = experiments.list_runs(dirs["root"])
    assert table["path"].tolist() == [str(good.path)]


class Payload:
    """Stands for code that a pickled checkpoint would run on loading."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoint_loads_with_weights_only_and_rejects_pickled_objects(tmp_path, dirs):
    splits = experiments.get_splits(_config(), dirs["data_root"])
    config = _config(epochs=2)
    fit(config, splits, run_dir=tmp_path / "a", progress=False)
    # an interrupted run keeps its checkpoint: make one, and read it back safely
    fit(config.replace(epochs=1), splits, run_dir=tmp_path / "b", progress=False)
    ckpt = load_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert ckpt["epoch"] == 0 and isinstance(ckpt["history"], list)
    evil = tmp_path / "evil.pt"
    torch.save({"config": config.to_json(), "epoch": 0, "payload": Payload()}, evil)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(evil)
    _truncate(tmp_path / "b" / CHECKPOINT)
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_checkpoint(tmp_path / "b" / CHECKPOINT)


@pytest.mark.parametrize("how", ["pickled", "truncated"])
def test_resume_from_a_bad_checkpoint_trains_from_scratch(tmp_path, dirs, how, capsys):
    splits = experiments.get_splits(_config(), dirs["data_root"])
    config = _config(epochs=2)
    straight = fit(config, splits, run_dir=tmp_path / "a", progress=False)
    run_dir = tmp_path / "b"
    run_dir.mkdir()
    if how == "pickled":
        torch.save({"config": config.to_json(), "epoch": 0, "payload": Payload()}, run_dir / CHECKPOINT)
    else:
        (run_dir / CHECKPOINT).write_bytes(b"PK\x03\x04 not a whole file")
    with pytest.warns(UserWarning, match="training from scratch"):
        resumed = fit(config, splits, run_dir=run_dir, progress=False)
    assert "this must never run" not in capsys.readouterr().out
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert json.loads(json.dumps(resumed.history["val_map"].tolist())) == straight.history["val_map"].tolist()
