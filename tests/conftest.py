"""Shared fixtures and settings of the test suite.

- Figures are drawn with matplotlib's Agg backend (no screen) and closed after every test.
- ``dirs``: a run cache and a data folder of the test's own (``root=``, ``data_root=`` of
  :func:`nhl.experiments.run` and friends); ``module_dirs`` is shared by a module's tests.
- ``tiny_config(**changes)``: the suite's smallest real run (scikit-learn's digits, the quick
  split, nested CSQ at 8 and 16 bits, one epoch): seconds to train.

Markers: ``slow`` (a test that trains or launches processes for more than a few seconds),
``notebook`` (executes a notebook in quick mode), ``browser`` (JupyterLab in headless Chromium,
``make test-browser``). ``make test`` runs everything but the browser; ``make test-fast`` leaves
out the slow and notebook tests too.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

from nhl.config import TrainConfig  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")


@pytest.fixture
def dirs(tmp_path):
    return dict(root=tmp_path / "runs", data_root=tmp_path / "data")


@pytest.fixture(scope="module")
def module_dirs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shared")
    return dict(root=tmp / "runs", data_root=tmp / "data")


TINY = dict(dataset="digits", protocol="quick", method="csq", bit_list=(8, 16), epochs=1, seed=0)


def tiny(**changes) -> TrainConfig:
    """:data:`TINY` with ``changes``."""
    return TrainConfig(**{**TINY, **changes})


@pytest.fixture
def tiny_config():
    return tiny
