"""The command line: tables on success, one-line errors (exit status 2) on bad arguments."""

import pytest

from nhl.cli import main

QUICK = ["--dataset", "digits", "--quick", "--no-progress", "--bits", "8,16"]


@pytest.fixture()
def dirs(tmp_path):
    return ["--runs", str(tmp_path / "runs"), "--data", str(tmp_path / "data")]


@pytest.mark.slow
def test_train_then_eval_loads_the_cached_run(dirs, capsys):
    assert main(["train", *QUICK, *dirs]) == 0
    out = capsys.readouterr().out
    assert "mAP" in out and "(cached)" not in out
    assert main(["eval", *QUICK, *dirs]) == 0
    assert "(cached)" in capsys.readouterr().out


def test_compare_prints_baselines_nested_and_speedup(dirs, capsys):
    assert main(["compare", *QUICK, *dirs]) == 0
    out = capsys.readouterr().out
    for text in ("baseline mAP", "nested mAP", "gain", "speed-up"):
        assert text in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--bits", "16,8"], "sorted"),
        (["train", "--bits", "8,x"], "comma-separated"),
        (["train", "--epochs", "0"], "positive integer"),
        (["train", "--method", "nope"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as err:
        main(args)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_dataset_lists_valid_ones(dirs, capsys):
    assert main(["train", "--dataset", "mnist", "--quick", *dirs]) == 2
    assert "fashion-mnist" in capsys.readouterr().err


def test_unknown_grid_method(dirs, capsys):
    assert main(["grid", *QUICK, "--methods", "csq,foo", *dirs]) == 2
    assert "unknown methods ['foo']" in capsys.readouterr().err
