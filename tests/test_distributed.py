"""Training with several processes (torchrun, DistributedDataParallel, Gloo on the CPU).

Each scenario launches ``torchrun --nproc_per_node=2`` on tests/helpers/dist_worker.py and
compares with one process training on the same global batches (nhl.distributed says what is
exact): identical weights on every rank, the dominance weighting of the global batch, the same
parameters as one process to float tolerance, resume after an interruption, and the CLI."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nhl import distributed, experiments
from nhl.config import TrainConfig
from nhl.data import load_splits
from nhl.train import fit

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "helpers" / "dist_worker.py"
TORCHRUN = Path(sys.executable).with_name("torchrun")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not TORCHRUN.exists() or not torch.distributed.is_available(),
                                reason="torchrun / torch.distributed not available")]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, cwd=ROOT, env=None, timeout=300):
    cmd = [str(TORCHRUN), "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_port()}", *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    load_splits("digits", root=root, seed=0)  # build the split files once, before the ranks read them
    return root


def _config(**kw):
    base = dict(dataset="digits", method="csq", bit_list=(8, 16, 32), epochs=2, batch_size=64, seed=0,
                device="cpu")
    base.update(kw)
    return TrainConfig(**base)


#: The ``fit`` cases compared with one process (exact in float64, see the test below).
EXACT = [("csq", "weighting"), ("dhn", "weighting"), ("dpn", "plain")]


def _exact_config(method, variant):
    return _config(method=method, nested_targets=method != "csq").variant(variant)


def _launch(jobs, out, data_dir):
    """One torchrun launch of 2 processes that runs ``jobs`` in order (tests/helpers/dist_worker.py);
    ``{job out: [rank 0 result, rank 1 result]}``. One launch for several checks: each launch
    costs seconds of start-up."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "jobs.json").write_text(json.dumps(jobs))
    _torchrun([str(WORKER), str(out / "jobs.json"), str(data_dir)])
    return {j["out"]: [torch.load(Path(j["out"]) / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
            for j in jobs}


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, data_dir):
    """Every two-process training of this file: one launch for the fits and the interruption,
    a second (fresh processes) for the resumption."""
    out = tmp_path_factory.mktemp("ranks")

    def job(name, scenario, config=None, float64=False):
        return {"out": str(out / name), "scenario": scenario,
                "config": None if config is None else config.to_dict(), "float64": float64}

    first = [job(f"{m}-{v}", "fit", _exact_config(m, v), float64=True) for m, v in EXACT]
    first += [job("distill", "fit", _config(method="dtsh")),
              job("straight", "fit", _config(method="csq", epochs=3)),
              job("resumed", "interrupt", _config(method="csq", epochs=3)),
              job("weights", "weights")]
    results = _launch(first, out / "first", data_dir)
    assert (out / "resumed" / "run" / "checkpoint.pt").exists()  # the interrupted run's
    results.update(_launch([job("resumed", "resume", _config(method="csq", epochs=3))],
                           out / "second", data_dir))
    return {Path(k).name: v for k, v in results.items()}


def _one_process(config, data_dir, float64=False):
    torch.set_num_threads(1)
    weights = []
    splits = load_splits(config.dataset, root=data_dir, seed=config.split_seed)
    result = fit(config, splits, progress=False, step_callback=lambda e, s, o, m: weights.append(o.weights.tolist()),
                 dtype=torch.float64 if float64 else None)
    return result, weights


@pytest.mark.parametrize("method,variant", EXACT)
def test_two_processes_match_one_process_on_the_global_batch(two_processes, data_dir, method, variant):
    """Exact cases: per-sample losses (DHN against its bank, the bank gathered from both
    ranks) without distillation; batch-norm statistics over the global batch; CSQ with
    independent per-length centres. In float64: Adam's first steps are close to the sign of
    the gradient, so in float32 any difference in summation order (even 1 against 2 threads
    in one process) flips the sign of near-zero gradient entries and moves them by the full
    learning rate. ``fc.0.bias`` feeds a batch norm, so its exact gradient is zero and its
    Adam steps are noise: it is not compared."""
    config = _exact_config(method, variant)
    ranks = two_processes[f"{method}-{variant}"]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # the same weights on every rank, every step
    single, single_weights = _one_process(config, data_dir, float64=True)
    torch.testing.assert_close(torch.tensor(ranks[0]["weights"]), torch.tensor(single_weights),
                               rtol=1e-9, atol=1e-10)
    if method == "csq":
        assert any(w != [1.0] * 3 for w in single_weights), "the rule should act in this setting"
    for name, p in single.model.state_dict().items():
        if name == "backbone.fc.0.bias" or name.endswith("num_batches_tracked"):
            continue
        for r in ranks:
            torch.testing.assert_close(r["state"][name], p, rtol=1e-7, atol=1e-9, msg=lambda m, n=name: f"{n}: {m}")
    assert ranks[0]["history"]["val_map"] == pytest.approx(single.history["val_map"].tolist(), abs=1e-9)


def test_distillation_is_data_parallel_and_identical_across_ranks(two_processes):
    """With distillation the SP term sees the local batch (approximate, documented), but the
    ranks still agree on the weights and end with the same parameters."""
    ranks = two_processes["distill"]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    for name, p in ranks[0]["state"].items():
        assert torch.equal(p, ranks[1]["state"][name]), name


def test_interrupted_two_process_run_resumes_to_the_same_result(two_processes):
    straight, resumed = two_processes["straight"], two_processes["resumed"]
    for name, p in straight[0]["state"].items():
        torch.testing.assert_close(resumed[0]["state"][name], p, rtol=1e-5, atol=1e-6, msg=name)
    assert resumed[0]["history"]["val_map"] == straight[0]["history"]["val_map"]


def test_weighting_from_all_reduced_gradients_equals_the_concatenated_batch(two_processes):
    """The objective alone: rank r sees half a batch of features; the weights it computes from
    the all-reduced per-length gradients equal one process's weights on the whole batch."""
    got = [r["weights"] for r in two_processes["weights"]]
    sys.path.insert(0, str(ROOT / "tests" / "helpers"))
    import conflicting

    z, y, obj = conflicting.setup()
    expected = obj(z.requires_grad_(), y, torch.arange(16)).weights
    assert torch.equal(got[0], got[1])
    torch.testing.assert_close(got[0], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(expected, torch.ones(3))  # the rule acted on this batch


def test_torchrun_cli_trains_once_and_writes_one_run_folder(tmp_path, data_dir):
    runs = tmp_path / "runs"
    args = ["-m", "nhl", "train", "--dataset", "digits", "--method", "csq", "--bits", "8,16",
            "--epochs", "1", "--runs", str(runs), "--data", str(data_dir), "--no-progress", "--device", "cpu"]
    done = _torchrun(args)
    folders = list(runs.glob("digits/csq/*/metrics.json"))
    assert len(folders) == 1
    assert "mAP" in done.stdout
    run = experiments.load(folders[0].parent)
    assert run.config.device == "cpu"
    again = _torchrun(args)  # cached: nothing is trained again
    assert len(list(runs.glob("digits/csq/*/metrics.json"))) == 1
    assert "cached" in again.stdout.lower() or again.stdout.count("mAP") >= 1


def test_helpers_without_a_process_group():
    assert not distributed.is_active() and distributed.rank() == 0 and distributed.world_size() == 1
    t = torch.arange(6.0)
    assert torch.equal(distributed.local_part(t), t)
    assert distributed.all_reduce_mean(t) is t
    (a,) = distributed.gather_rows(t[:, None])
    assert torch.equal(a[:, 0], t)
    assert distributed.local_scale(32, 64) == 0.5
    distributed.shutdown()  # nothing to leave: a no-op
    assert shutil.which  # keep imports used
