"""``ensure_available`` (``make run``/``make test`` call it first): the order of the places it
looks, when it installs the Debian package, and that it never prompts. Paths, the download and
every system command are faked; nothing here runs apt-get or sudo."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

import nhl.data.fashion_mnist as fm
from nhl.data.__main__ import main as data_main
from nhl.data.idx import write_idx


def fake_files(directory: Path) -> dict[str, str]:
    """Four tiny IDX files in ``directory``; their decompressed SHA-256 per stem."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(4, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(2, dtype=np.uint8),
    }
    sums = {}
    for stem, arr in arrays.items():
        write_idx(directory / stem, arr, compress=False)
        sums[stem] = hashlib.sha256((directory / stem).read_bytes()).hexdigest()
    return sums


class FakeMachine:
    """The system as ensure_available sees it: which programs exist, who we are, what succeeds."""

    def __init__(self, monkeypatch, tmp_path, *, apt=True, root=False, sudo=None, known=True,
                 download_works=False, install_works=True):
        self.tmp = tmp_path
        self.system = tmp_path / "usr-share-datasets-fashion-mnist"
        self.probes: list[list[str]] = []
        self.ran: list[list[str]] = []
        self.downloads: list[Path] = []
        self.sums: dict[str, str] = {}
        programs = {"apt-get": apt, "apt-cache": apt, "sudo": sudo is not None}
        monkeypatch.setattr(fm, "SEARCH_PATHS", [self.system])
        monkeypatch.setattr(fm, "_which", lambda name: f"/usr/bin/{name}" if programs.get(name) else None)
        monkeypatch.setattr(fm, "_euid", lambda: 0 if root else 1000)

        def succeeds(command):
            self.probes.append(command)
            if command == ["sudo", "-n", "true"]:
                return sudo == "nopasswd"
            if command == ["apt-cache", "show", fm.DEBIAN_PACKAGE]:
                return known
            raise AssertionError(f"unexpected probe {command}")

        def run(command):
            self.ran.append(command)
            if "install" in command:
                if install_works:
                    self.sums.update(fake_files(self.system))
                    monkeypatch.setattr(fm, "SHA256", dict(self.sums))
                    return 0
                return 100
            return 0

        def download(root):
            self.downloads.append(Path(root))
            if not download_works:
                raise OSError("network unreachable (test)")
            self.sums.update(fake_files(Path(root) / "FashionMNIST" / "raw"))
            monkeypatch.setattr(fm, "SHA256", dict(self.sums))

        monkeypatch.setattr(fm, "_succeeds", succeeds)
        monkeypatch.setattr(fm, "_run", run)
        monkeypatch.setattr(fm, "_torchvision_download", download)


@pytest.fixture
def machine(monkeypatch, tmp_path):
    return lambda **kw: FakeMachine(monkeypatch, tmp_path, **kw)


def test_found_in_data_dir_first_then_debian_files(machine, tmp_path, monkeypatch):
    m = machine(root=True)
    sums = fake_files(m.system)
    monkeypatch.setattr(fm, "SHA256", sums)
    got = fm.ensure_available(tmp_path / "data")
    assert got.how == "found" and got.directory == m.system
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    monkeypatch.setattr(fm, "SHA256", {**sums, **fake_files(raw)})
    got = fm.ensure_available(tmp_path / "data")
    assert got.how == "found" and got.directory == raw
    assert m.downloads == [] and m.ran == [] and m.probes == []  # nothing else was tried


def test_root_dir_defaults_to_nhl_data(machine, tmp_path, monkeypatch):
    machine()
    monkeypatch.setenv("NHL_DATA", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(fm, "SHA256", fake_files(tmp_path / "elsewhere" / "FashionMNIST" / "raw"))
    assert fm.ensure_available().directory == tmp_path / "elsewhere" / "FashionMNIST" / "raw"


def test_download_comes_before_apt(machine, tmp_path):
    m = machine(root=True, download_works=True)
    got = fm.ensure_available(tmp_path / "data")
    assert got.how == "downloaded" and m.downloads == [tmp_path / "data"]
    assert m.ran == []


def test_root_on_debian_installs_the_package(machine, tmp_path):
    m = machine(root=True)
    lines = []
    got = fm.ensure_available(tmp_path / "data", echo=lines.append)
    assert m.downloads == [tmp_path / "data"]  # the download was tried first, and failed
    assert m.ran == [["apt-get", "install", "-y", "dataset-fashion-mnist"]]
    assert got.how == "installed" and got.directory == m.system and got.commands == m.ran
    assert any("network unreachable" in line for line in lines)
    assert any("apt-get install -y dataset-fashion-mnist" in line for line in lines)
    assert ["sudo", "-n", "true"] not in m.probes  # root needs no sudo


def test_unknown_package_updates_the_lists_first(machine, tmp_path):
    m = machine(root=True, known=False)
    fm.ensure_available(tmp_path / "data")
    assert m.ran == [["apt-get", "update"], ["apt-get", "install", "-y", "dataset-fashion-mnist"]]


def test_passwordless_sudo_is_used_without_prompting(machine, tmp_path):
    m = machine(sudo="nopasswd", known=False)
    got = fm.ensure_available(tmp_path / "data", download=False)
    assert m.probes[0] == ["sudo", "-n", "true"]
    assert m.ran == [["sudo", "-n", "apt-get", "update"],
                     ["sudo", "-n", "apt-get", "install", "-y", "dataset-fashion-mnist"]]
    assert got.how == "installed" and m.downloads == []


@pytest.mark.parametrize("kw, why", [
    (dict(sudo="password"), "asks for a password"),
    (dict(sudo=None), "sudo is missing"),
    (dict(apt=False, root=True), "no apt-get"),
])
def test_no_install_without_apt_or_rights(machine, tmp_path, kw, why):
    m = machine(**kw)
    with pytest.raises(FileNotFoundError) as info:
        fm.ensure_available(tmp_path / "data")
    msg = str(info.value)
    assert m.ran == []
    assert why in msg and "network unreachable" in msg
    assert "sudo apt-get install dataset-fashion-mnist" in msg  # the instructions of today
    assert str(m.system) in msg and str(tmp_path / "data" / "FashionMNIST" / "raw") in msg


def test_failed_install_is_reported(machine, tmp_path):
    m = machine(root=True, install_works=False)
    with pytest.raises(FileNotFoundError, match="failed with exit status 100"):
        fm.ensure_available(tmp_path / "data")
    assert m.ran == [["apt-get", "install", "-y", "dataset-fashion-mnist"]]


def test_no_install_and_no_download_options(machine, tmp_path):
    m = machine(root=True)
    with pytest.raises(FileNotFoundError):
        fm.ensure_available(tmp_path / "data", download=False, install=False)
    assert m.ran == [] and m.downloads == []


def test_dry_run_does_nothing_but_says_what_it_would(machine, tmp_path):
    m = machine(sudo="nopasswd")
    got = fm.ensure_available(tmp_path / "data", dry_run=True)
    assert got.how == "missing" and m.ran == [] and m.downloads == []
    assert got.commands == [["sudo", "-n", "apt-get", "install", "-y", "dataset-fashion-mnist"]]
    assert "would run (password-less sudo): sudo -n apt-get install -y dataset-fashion-mnist" in got.describe()


def test_corrupt_file_stops_with_the_file_named(machine, tmp_path, monkeypatch):
    m = machine(root=True)
    sums = fake_files(m.system)
    monkeypatch.setattr(fm, "SHA256", {**sums, "t10k-labels-idx1-ubyte": "0" * 64})
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        fm.ensure_available(tmp_path / "data")
    assert m.ran == []  # a damaged copy is not silently replaced


def test_command_line(machine, tmp_path, capsys, monkeypatch):
    m = machine(root=True)
    assert data_main(["ensure", "--root", str(tmp_path / "d"), "--dry-run"]) == 0
    assert "would run (running as root): apt-get install -y dataset-fashion-mnist" in capsys.readouterr().out
    assert data_main(["ensure", "--root", str(tmp_path / "d"), "--no-install"]) == 1
    assert "Fashion-MNIST was not found" in capsys.readouterr().err
    assert data_main(["ensure", "--root", str(tmp_path / "d")]) == 0
    assert f"installed in {m.system}" in capsys.readouterr().out
    assert data_main(["ensure", "--root", str(tmp_path / "d")]) == 0
    assert f"found in {m.system}" in capsys.readouterr().out
