"""Devices: 'auto' picks CUDA, then MPS, then the CPU; explicit devices are checked; only the
device type and amp enter the run cache key; training and evaluation run on CUDA when present."""

import pytest
import torch

from nhl import devices, experiments
from nhl.config import TrainConfig
from nhl.data import load_splits
from nhl.train import fit

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_auto_picks_what_is_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(devices, "mps_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("cuda")


def test_bad_and_missing_devices_are_explained(monkeypatch):
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        TrainConfig(device="gpu0")
    with pytest.raises(TypeError, match="device must be a string"):
        TrainConfig(device=0)
    with pytest.raises(TypeError, match="amp must be True or False"):
        TrainConfig(amp="yes")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        devices.resolve_device("cuda:0")
    with pytest.raises(ValueError, match="CUDA only"):
        devices.check_amp(True, torch.device("cpu"))


def test_cache_key_has_device_type_and_amp_but_not_the_index(monkeypatch):
    base = TrainConfig(dataset="digits")
    cpu = experiments.run_key(base.replace(device="cpu"), "fp")
    assert experiments.run_key(base, "fp") == cpu or torch.cuda.is_available()  # auto = cpu here
    assert "runtime" not in base.replace(device="cpu").identity()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    a = experiments.run_key(base.replace(device="cuda:0"), "fp")
    assert a == experiments.run_key(base.replace(device="cuda:1"), "fp")  # same type: same run
    assert a != cpu
    assert a != experiments.run_key(base.replace(device="cuda", amp=True), "fp")


def test_amp_on_the_cpu_is_refused(tmp_path):
    splits = load_splits("digits", root=tmp_path, seed=0)
    with pytest.raises(ValueError, match="CUDA only"):
        fit(TrainConfig(dataset="digits", epochs=1, device="cpu", amp=True), splits, progress=False)


@CUDA
@pytest.mark.parametrize("amp", [False, True])
def test_training_and_codes_on_cuda(tmp_path, amp):
    splits = load_splits("digits", root=tmp_path, seed=0)
    config = TrainConfig(dataset="digits", method="dhn", bit_list=(8, 16, 32), epochs=2, device="cuda", amp=amp)
    result = fit(config, splits, progress=False)
    assert next(result.model.parameters()).device.type == "cpu"  # handed back on the CPU
    assert result.history["val_map"].notna().all() and result.best_score > 0.3
    cpu = fit(config.replace(device="cpu", amp=False), splits, progress=False)
    assert abs(result.best_score - cpu.best_score) < 0.1  # same method, another device's numerics
    run = experiments.run(config, root=tmp_path / "runs", data_root=tmp_path, progress=False)
    assert run.codes["database"].shape[1] == 32 and run.metrics["map"]["32"] > 0.3


def test_image_lists_are_decoded_by_dataloader_workers(tmp_path):
    """Lazy image files go through a DataLoader with worker processes; the result is the same
    as decoding them in the main process, batch for batch."""
    from PIL import Image

    from nhl.models import encode_dataset

    img_root, lists = tmp_path / "images", tmp_path / "lists"
    img_root.mkdir()
    lists.mkdir()
    rows = []
    gen = torch.Generator().manual_seed(0)
    for i in range(40):
        pixels = (torch.rand(12, 12, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(img_root / f"{i}.png")
        rows.append(f"{i}.png {int(i % 2 == 0)} {int(i % 2 == 1)}")
    (lists / "train.txt").write_text("\n".join(rows[:24]) + "\n")
    (lists / "test.txt").write_text("\n".join(rows[24:30]) + "\n")
    (lists / "database.txt").write_text("\n".join(rows[:24] + rows[30:]) + "\n")
    splits = load_splits("image-list", root=tmp_path, list_dir=lists, image_root=img_root, image_size=8)
    assert not splits.train.in_memory
    config = TrainConfig(dataset="image-list", method="csq", bit_list=(8, 16), epochs=2, batch_size=8, device="cpu")
    main_process = fit(config, splits, progress=False, loader_workers=0)
    workers = fit(config, splits, progress=False, loader_workers=2)
    numbers = [c for c in main_process.history.columns if not c.endswith("seconds")]
    assert main_process.history[numbers].equals(workers.history[numbers])
    a = encode_dataset(workers.model, splits.database, batch_size=5, workers=0)
    b = encode_dataset(workers.model, splits.database, batch_size=5, workers=2)
    assert (a == b).all() and a.shape == (len(splits.database), 16)
