"""Run by ``torchrun`` from tests/test_distributed.py: several jobs in one launch, results per rank.

    torchrun --nproc_per_node=2 tests/helpers/dist_worker.py JOBS_JSON DATA_DIR

``JOBS_JSON`` lists jobs ``{"out", "scenario", "config", "float64"}``, run in order in the same
process group. Scenarios: ``fit`` (train, save the result), ``interrupt`` (stop at the first step
of epoch 1, after the epoch-0 checkpoint), ``resume`` (continue that checkpoint), ``weights``
(the objective alone on a batch split over the ranks, tests/helpers/conflicting.py). Each job
writes ``OUT/rank{r}.pt``.
"""

import json
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import conflicting  # noqa: E402

from nhl import distributed  # noqa: E402
from nhl.config import TrainConfig  # noqa: E402
from nhl.data import load_splits  # noqa: E402
from nhl.train import fit  # noqa: E402


def run_fit(job: dict, data: str) -> dict:
    scenario = job["scenario"]
    out = Path(job["out"])
    config = TrainConfig.from_dict(job["config"])
    splits = load_splits(config.dataset, root=data, protocol=config.protocol, seed=config.split_seed)
    weights: list[list[float]] = []

    def record(epoch, step, output, model):
        weights.append(output.weights.tolist())
        if scenario == "interrupt" and epoch == 1 and step == 0:
            raise KeyboardInterrupt

    run_dir = out / "run" if scenario in ("interrupt", "resume") else None
    try:
        result = fit(config, splits, run_dir=run_dir, progress=False, step_callback=record,
                     dtype=torch.float64 if job.get("float64") else None)
    except KeyboardInterrupt:
        result = None
    state = None if result is None else {k: v.clone() for k, v in result.model.state_dict().items()}
    return {"weights": weights, "state": state,
            "history": None if result is None else result.history.to_dict("list")}


def run_weights(job: dict) -> dict:
    z, y, obj = conflicting.setup()
    part = torch.arange(16)[distributed.rank()::2]
    out = obj(z[part].requires_grad_(), y[part], part, scale=distributed.local_scale(len(part), 16))
    return {"weights": out.weights}


def main() -> None:
    jobs, data = json.loads(Path(sys.argv[1]).read_text()), sys.argv[2]
    distributed.init_from_env(torch.device("cpu"))
    for job in jobs:
        got = run_weights(job) if job["scenario"] == "weights" else run_fit(job, data)
        r = distributed.rank()
        out = Path(job["out"])
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"rank": r, "world": distributed.world_size(), **got}, out / f"rank{r}.pt")
        distributed.barrier()
    distributed.shutdown()  # what the exit handler does: leave the group before teardown
    assert not torch.distributed.is_initialized()
    distributed.shutdown()  # a second call is a no-op


if __name__ == "__main__":
    main()
