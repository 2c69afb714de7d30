"""What the tutorial notebooks share: the quick-mode switch, the standard run, and the widgets.

Every notebook starts with ``S = nhl.tutorial.setup()``. The one documented switch is the
environment variable ``NHL_QUICK=1``: it shrinks the data split (protocol ``"quick"``) and the
epochs so a notebook runs in well under a minute (the tests do this); the default is the full
setting, whose epochs are those of the committed studies (so notebooks reuse their cached runs).

The notebooks' interactive widgets live beside it: :mod:`nhl.tutorial.explorer` (retrieval with
a trained nested model, notebook 09) and :mod:`nhl.tutorial.ablation_explorer` (the committed
ablation, notebook 04). Executing the notebooks, building the site and the student copies is
tooling outside the package (``tools/``, run by the Makefile).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..config import TrainConfig
from ..studies.catalogue import STUDY_EPOCHS
from ..utils import quick_mode, seed_everything

#: The standard run of the tutorial: nested DHN (a pairwise loss whose codes spread out) with
#: full NHL on Fashion-MNIST. Notebooks 02-04 move to the 100-class set where length matters.
STANDARD_METHOD = "dhn"


QUICK_EPOCHS = 2


def full_epochs(dataset: str) -> int:
    """Epochs of the full setting: the same as the committed studies (:data:`nhl.studies.catalogue.STUDY_EPOCHS`),
    so a notebook reuses their cached runs (5 epochs on every dataset)."""
    return STUDY_EPOCHS.get(dataset, STUDY_EPOCHS["fashion-mnist"])


@dataclass(frozen=True)
class Settings:
    """What a notebook needs to size its work: quick or full, protocol, epochs, seeds."""

    quick: bool
    protocol: str | None
    seeds: tuple[int, ...]

    def epochs(self, dataset: str = "fashion-mnist") -> int:
        """Epochs for ``dataset``: :func:`full_epochs` in the full setting, 2 in quick mode."""
        return QUICK_EPOCHS if self.quick else full_epochs(dataset)

    def config(self, **changes) -> TrainConfig:
        """The tutorial's standard run (nested DHN + full NHL on Fashion-MNIST), with changes.

        ``dataset=...`` switches data set and its epochs; the method's learning rate and loss
        hyper-parameters come from :mod:`nhl.recipes`.
        """
        dataset = changes.get("dataset", "fashion-mnist")
        base = dict(dataset=dataset, protocol=self.protocol, epochs=self.epochs(dataset),
                    method=STANDARD_METHOD)
        base.update(changes)
        return TrainConfig(**base)

    def pick(self, full, quick):
        """``quick`` in quick mode, ``full`` otherwise (for notebook-specific sizes)."""
        return quick if self.quick else full


def setup(seeds: Sequence[int] = (0, 1, 2), seed: int = 0) -> Settings:
    """Read ``NHL_QUICK``, seed every generator, set the plot style; print the mode."""
    from .. import plots

    quick = quick_mode()
    seed_everything(seed)
    plots.style()
    settings = Settings(
        quick=quick,
        protocol="quick" if quick else None,
        seeds=tuple(seeds[:2]) if quick else tuple(seeds),
    )
    mode = "QUICK (NHL_QUICK=1: small split, few epochs)" if quick else "full"
    print(f"nhl tutorial, {mode} setting: {settings.epochs()} epochs on Fashion-MNIST, "
          f"{settings.epochs('fashion-mnist-100')} on the composite sets, seeds {settings.seeds}")
    return settings
