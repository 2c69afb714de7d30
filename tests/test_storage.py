"""nhl.storage: bytes per item of packed codes vs float features."""

import pytest

from nhl.storage import code_bytes, human_bytes, storage_table


def test_code_bytes_rounds_up():
    assert [code_bytes(b) for b in (1, 8, 9, 16, 128)] == [1, 1, 2, 2, 16]


def test_human_bytes():
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(70_656_000) == "67.4 MiB"


def test_storage_table_fashion_mnist_numbers():
    t = storage_table((8, 16, 32, 64, 128), n_items=69_000, feature_dim=256)
    assert t.loc["8-bit code", "bytes per item"] == 1
    assert t.loc["128-bit code", "total bytes"] == 16 * 69_000
    assert t.loc["all lengths, separate codes", "bits per item"] == 248
    assert t.loc["all lengths, separate codes", "bytes per item"] == 31
    assert t.loc["all lengths, nested code", "bytes per item"] == 16
    feats = t.loc["float32 features (d=256)"]
    assert feats["bytes per item"] == 1024 and feats["total bytes"] == 70_656_000
    assert t.loc["128-bit code", "x smaller than features"] == 64
    assert t.loc["8-bit code", "total"] == "67.4 KiB"


def test_storage_table_checks_inputs():
    with pytest.raises(ValueError, match="n_items"):
        storage_table((8,), n_items=0, feature_dim=4)
    with pytest.raises(ValueError, match="sorted"):
        storage_table((16, 8), n_items=1, feature_dim=4)
    assert "all lengths, nested code" not in storage_table((8,), 1, 4).index
