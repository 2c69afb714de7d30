"""Run by ``torchrun`` from tests/test_distributed.py: one scenario per call, results per rank.

    torchrun --nproc_per_node=2 tests/helpers/dist_worker.py SCENARIO OUT_DIR DATA_DIR CONFIG_JSON [float64]
"""

import json
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

from nhl import distributed  # noqa: E402
from nhl.config import TrainConfig  # noqa: E402
from nhl.data import load_splits  # noqa: E402
from nhl.train import fit  # noqa: E402


def main() -> None:
    scenario, out, data, config_json = sys.argv[1:5]
    dtype = torch.float64 if sys.argv[5:] == ["float64"] else None
    out = Path(out)
    config = TrainConfig.from_dict(json.loads(config_json))
    splits = load_splits(config.dataset, root=data, protocol=config.protocol, seed=config.split_seed)
    weights: list[list[float]] = []

    def record(epoch, step, output, model):
        weights.append(output.weights.tolist())
        if scenario == "interrupt" and epoch == 1 and step == 0:
            raise KeyboardInterrupt

    run_dir = out / "run" if scenario in ("interrupt", "resume") else None
    try:
        result = fit(config, splits, run_dir=run_dir, progress=False, step_callback=record, dtype=dtype)
    except KeyboardInterrupt:
        result = None
    r = distributed.rank()
    state = None
    if result is not None:
        state = {k: v.clone() for k, v in result.model.state_dict().items()}
    torch.save({"rank": r, "world": distributed.world_size(), "weights": weights, "state": state,
                "history": None if result is None else result.history.to_dict("list")},
               out / f"rank{r}.pt")
    distributed.barrier()


if __name__ == "__main__":
    main()
