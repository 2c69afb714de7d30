"""Fashion-MNIST: 70,000 grayscale 28x28 images of 10 clothing classes.

The four IDX files are looked for, in order, in ``{root}/FashionMNIST/raw/`` (``.gz`` or
uncompressed), then in each directory of :data:`SEARCH_PATHS` (Debian's
``dataset-fashion-mnist`` package), and finally downloaded by torchvision into
``{root}/FashionMNIST/raw/`` when ``download=True``. Files are read here, not by torchvision,
and verified by the SHA-256 of their decompressed bytes, since Debian recompresses the ``.gz``
files (their md5 no longer matches torchvision's list). Decoding takes well under a second, so
no processed cache is written.

:func:`ensure_available` (``python -m nhl.data ensure``, run by ``make run`` and ``make test``)
follows the same order and, as a last step on Debian/Ubuntu, installs the
``dataset-fashion-mnist`` package with ``apt-get`` when that needs no password (running as root,
or password-less ``sudo``). It never prompts; otherwise it stops with the instructions of
:func:`find_fashion_mnist`.

The full dataset is the 60,000 training images followed by the 10,000 test images.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .dataset import FullData
from .idx import read_idx

__all__ = [
    "CLASS_NAMES",
    "DEBIAN_PACKAGE",
    "FILES",
    "SEARCH_PATHS",
    "SHA256",
    "Availability",
    "apt_plan",
    "ensure_available",
    "find_fashion_mnist",
    "load_fashion_mnist",
]

CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

#: The four files, in the order they are read (file stem without ``.gz``).
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: SHA-256 of the *decompressed* files.
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

#: System directories searched after ``{root}/FashionMNIST/raw`` (tests may replace this list).
SEARCH_PATHS: list[Path] = [Path("/usr/share/datasets/fashion-mnist")]

#: The Debian/Ubuntu package that installs the four files into ``SEARCH_PATHS[0]``.
DEBIAN_PACKAGE = "dataset-fashion-mnist"

#: Seconds without network progress after which torchvision's download is given up.
DOWNLOAD_TIMEOUT = 30


def _raw_dir(root: str | Path) -> Path:
    return Path(root) / "FashionMNIST" / "raw"


def _files_in(directory: Path) -> dict[str, Path] | None:
    """The four files in ``directory`` (``.gz`` preferred over raw), or None if any is missing."""
    found = {}
    for stem in FILES:
        for candidate in (directory / f"{stem}.gz", directory / stem):
            if candidate.is_file():
                found[stem] = candidate
                break
        else:
            return None
    return found


def _torchvision_download(root: Path) -> None:
    """Let torchvision download Fashion-MNIST into ``{root}/FashionMNIST/raw`` (needs internet)."""
    from torchvision.datasets import FashionMNIST

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # a silent network fails in seconds, not hours
    try:
        FashionMNIST(str(root), train=True, download=True)
    finally:
        socket.setdefaulttimeout(previous)


def _missing_message(
    root: Path, searched: list[Path], download_error: str | None, install_note: str | None = None
) -> str:
    raw = _raw_dir(root)
    lines = [
        "Fashion-MNIST was not found. Searched: " + ", ".join(str(d) for d in searched) + ".",
    ]
    if download_error is not None:
        lines.append(f"The torchvision download into {raw} failed: {download_error}")
    if install_note is not None:
        lines.append(install_note)
    lines += [
        "Get the data in one of these ways:",
        "  * Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist",
        f"  * on a machine with internet, load with download=True: torchvision fetches the files "
        f"into {raw}",
        f"  * copy the four files ({', '.join(f + '.gz' for f in FILES)}) into {raw}",
    ]
    return "\n".join(lines)


def find_fashion_mnist(root: str | Path = "data", download: bool = True) -> dict[str, Path]:
    """Locate the four files following the search order above; download as a last resort.

    Returns ``{file stem: path}``; raises ``FileNotFoundError`` with instructions when absent.
    """
    root = Path(root)
    searched = [_raw_dir(root), *[Path(p) for p in SEARCH_PATHS]]
    for directory in searched:
        files = _files_in(directory)
        if files is not None:
            return files
    download_error = None
    if download:
        try:
            _torchvision_download(root)
        except Exception as err:  # network errors come in many types (URLError, RuntimeError...)
            download_error = f"{type(err).__name__}: {err}"
        else:
            files = _files_in(_raw_dir(root))
            if files is not None:
                return files
            download_error = "it finished but the files are not there"
    raise FileNotFoundError(_missing_message(root, searched, download_error))


# --------------------------------------------------------------------------------------------
# Getting the data before anything runs (make run / make test). The system calls are one small
# function each, so the tests replace them and never run apt-get.
def _which(name: str) -> str | None:
    return shutil.which(name)


def _euid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else -1


def _succeeds(command: list[str]) -> bool:
    """Whether ``command`` exits 0 (quietly, no input, so ``sudo -n`` can never prompt)."""
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _run(command: list[str]) -> int:
    """Run ``command`` with its output shown; its exit status."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(command, stdin=subprocess.DEVNULL, env=env, check=False).returncode
    except OSError as err:
        print(f"could not start {command[0]}: {err}")
        return 127


def apt_plan() -> tuple[list[list[str]], str]:
    """The commands that install :data:`DEBIAN_PACKAGE` without a password prompt, and why.

    Empty (with the reason) unless the machine has ``apt-get`` (Debian/Ubuntu) and the user is
    root or has password-less ``sudo`` (``sudo -n true`` succeeds). ``apt-get update`` comes
    first when ``apt-cache`` does not know the package yet (fresh package lists).
    """
    if _which("apt-get") is None:
        return [], "this machine has no apt-get (not Debian/Ubuntu)"
    if _euid() == 0:
        prefix, who = [], "running as root"
    elif _which("sudo") is not None and _succeeds(["sudo", "-n", "true"]):
        prefix, who = ["sudo", "-n"], "password-less sudo"
    else:
        return [], ("apt-get needs root, and sudo is missing or asks for a password "
                    "(nhl never prompts for one)")
    install = [*prefix, "apt-get", "install", "-y", DEBIAN_PACKAGE]
    if _succeeds(["apt-cache", "show", DEBIAN_PACKAGE]):
        return [install], who
    return [[*prefix, "apt-get", "update"], install], f"{who}; {DEBIAN_PACKAGE} is not in the package lists yet"


@dataclass
class Availability:
    """What :func:`ensure_available` found or did.

    ``how``: ``"found"`` (already on disk), ``"downloaded"`` (torchvision), ``"installed"``
    (apt-get) or, for a dry run that found nothing, ``"missing"``. ``commands``: the apt-get
    commands run (dry run: the ones that would run; empty when none would), ``reason``: why
    those commands (or why none).
    """

    how: str
    files: dict[str, Path] = field(default_factory=dict)
    commands: list[list[str]] = field(default_factory=list)
    reason: str = ""

    @property
    def directory(self) -> Path | None:
        return Path(self.files[FILES[0]]).parent if self.files else None

    def describe(self) -> str:
        if self.how == "missing":
            if not self.commands:
                return f"Fashion-MNIST is missing; would not install {DEBIAN_PACKAGE}: {self.reason}"
            steps = " && ".join(shlex.join(c) for c in self.commands)
            return f"Fashion-MNIST is missing; would run ({self.reason}): {steps}"
        return f"Fashion-MNIST: {self.how} in {self.directory}"


def _first_found(directories: list[Path]) -> dict[str, Path] | None:
    for directory in directories:
        files = _files_in(directory)
        if files is not None:
            return files
    return None


def _verified(files: dict[str, Path], how: str, verify: bool, **extra) -> Availability:
    if verify:  # decompress and check the SHA-256 now, so a damaged file stops make, not cell 3
        hint = "Delete it; the next `make run` fetches the data again."
        for stem, path in files.items():
            read_idx(path, SHA256.get(stem), hint)
    return Availability(how, files, **extra)


def ensure_available(
    root: str | Path | None = None,
    download: bool = True,
    install: bool = True,
    dry_run: bool = False,
    verify: bool = True,
    echo: Callable[[str], object] = print,
) -> Availability:
    """Make sure the four Fashion-MNIST files are on this machine; say where they are.

    In order: ``{root}/FashionMNIST/raw`` (``root`` default :func:`nhl.utils.data_dir`), the
    :data:`SEARCH_PATHS` (Debian's package), torchvision's download into the first (when
    ``download``), and finally, when ``install`` and :func:`apt_plan` allows it (Debian/Ubuntu,
    root or password-less sudo), ``apt-get install -y dataset-fashion-mnist`` (after
    ``apt-get update`` if the package is unknown). Never asks for a password. Otherwise raises
    ``FileNotFoundError`` with the instructions of :func:`find_fashion_mnist`. ``verify`` checks
    the files' checksums (about half a second). ``dry_run`` downloads and installs nothing: it
    returns ``how="missing"`` with the apt-get commands it would run. ``echo`` gets one line per
    step taken.
    """
    from ..utils import data_dir

    root = Path(root) if root is not None else data_dir()
    raw = _raw_dir(root)
    system = [Path(p) for p in SEARCH_PATHS]
    searched = [raw, *system]
    files = _first_found(searched)
    if files is not None:
        return _verified(files, "found", verify)
    if dry_run:
        plan, why = apt_plan() if install else ([], "install=False")
        return Availability("missing", commands=plan, reason=why)
    download_error = None
    if download:
        echo(f"Fashion-MNIST is not in {', '.join(map(str, searched))}; "
             f"downloading it with torchvision into {raw}")
        try:
            _torchvision_download(root)
        except Exception as err:  # network errors come in many types (URLError, RuntimeError...)
            download_error = f"{type(err).__name__}: {err}"
        else:
            files = _files_in(raw)
            if files is not None:
                return _verified(files, "downloaded", verify)
            download_error = "it finished but the files are not there"
        echo(f"the download failed: {' '.join(download_error.split())}")
    install_note = None
    if install:
        plan, why = apt_plan()
        if not plan:
            install_note = f"Not installing {DEBIAN_PACKAGE} automatically: {why}."
        for command in plan:
            echo(f"installing the Debian package ({why}): {shlex.join(command)}")
            status = _run(command)
            if status != 0:
                install_note = f"`{shlex.join(command)}` failed with exit status {status}."
                break
        else:
            if plan:
                files = _first_found(system)
                if files is not None:
                    return _verified(files, "installed", verify, commands=plan, reason=why)
                install_note = (f"{DEBIAN_PACKAGE} was installed but its files are not in "
                                f"{', '.join(map(str, system))}.")
    raise FileNotFoundError(_missing_message(root, searched, download_error, install_note))


def load_fashion_mnist(root: str | Path = "data", download: bool = True) -> FullData:
    """Load all 70,000 images as ``uint8`` ``(N, 1, 28, 28)`` with one-hot labels."""
    files = find_fashion_mnist(root, download)
    hint = f"(Searched {_raw_dir(root)} first, then {', '.join(map(str, SEARCH_PATHS))}.)"
    arrays = {stem: read_idx(path, SHA256.get(stem), hint) for stem, path in files.items()}
    images, labels = [], []
    for split in ("train", "t10k"):
        img = arrays[f"{split}-images-idx3-ubyte"]
        lab = arrays[f"{split}-labels-idx1-ubyte"]
        if img.ndim != 3 or lab.ndim != 1 or len(img) != len(lab):
            raise ValueError(
                f"{files[f'{split}-images-idx3-ubyte']} and its labels file disagree: image "
                f"array {img.shape}, label array {lab.shape}; expected (n, 28, 28) and (n,)"
            )
        images.append(img)
        labels.append(lab)
    images_np = np.concatenate(images).astype(np.uint8, copy=False)
    class_ids = np.concatenate(labels).astype(np.int64)
    if class_ids.size and (class_ids.min() < 0 or class_ids.max() >= len(CLASS_NAMES)):
        raise ValueError(f"Fashion-MNIST labels must lie in 0..9, found {class_ids.max()}")
    n_train = len(labels[0])
    n = len(class_ids)
    onehot = np.zeros((n, len(CLASS_NAMES)), dtype=np.uint8)
    onehot[np.arange(n), class_ids] = 1
    return FullData(
        name="fashion-mnist",
        images=torch.from_numpy(images_np).unsqueeze(1),
        labels=onehot,
        class_names=list(CLASS_NAMES),
        partitions={
            "train": np.arange(n_train, dtype=np.int64),
            "test": np.arange(n_train, n, dtype=np.int64),
        },
        source=str(Path(files[FILES[0]]).parent),
        identity="fashion-mnist-idx",
        multi_label=False,
        normalization="train",
    )
