"""The committed studies: what each one trains (docs/method.md §9).

A study is a named list of :class:`~nhl.config.TrainConfig` plus the function that turns their
finished runs into a long table (:mod:`nhl.studies.tables`). ``python -m nhl study NAME``
trains what the run cache lacks and writes ``results/NAME.csv`` with its stamp
(:mod:`nhl.studies.runner`, :mod:`nhl.studies.results`).

* ``hparams``: the learning-rate search on the Fashion-MNIST validation split behind
  :mod:`nhl.recipes` (standard setting: 15 epochs, nested NHL).
* ``grid``: the eight base losses, single-length against nested NHL at every length, one seed,
  on ``fashion-mnist`` and ``fashion-mnist-100``.
* ``seeds``: the same comparison for three representative losses (:data:`REPRESENTATIVE`), three
  seeds, on the three datasets (:data:`SEEDS_DATASETS`).
* ``ablation``: plain / weighting / distillation / both for those losses, three seeds, three
  datasets, with how often the dominance rule fires (share of steps with any alpha < 1).
* ``centers``: CSQ with improved nested, Sylvester-row nested, random nested and independent
  centres.
* ``bank``: DHN, DSH and DBDH with their memory bank written from the current network never,
  once before training (the default) or before every epoch; three seeds on Fashion-MNIST.
* ``lambda``: distillation alone at lambda_D in :data:`LAMBDAS` for DHN and CSQ on
  ``fashion-mnist-100``, three seeds.

The paper's regime (docs/method.md §6, :mod:`nhl.regimes`): a pretrained backbone, training to
convergence (early stopping, the same rule for every model: :data:`REGIME_SETTINGS`), lambda_D
per method (:data:`nhl.recipes.DISTILL`).

* ``lambda-frozen``: full NHL at every lambda_D of :data:`nhl.recipes.DISTILL_CHOICES`, frozen
  regime, one seed: the validation choice recorded in :mod:`nhl.recipes`.
* ``frozen``: single-length models, plain nested and full NHL, frozen regime, three seeds; with
  the classifier-code and truncated-128-bit baselines (:mod:`nhl.studies.baselines`).
* ``frozen-ablation``: plain / weighting / distillation / both, frozen regime, ten seeds on
  ``fashion-mnist-100`` and five on the other two sets; with the reference code's variants
  (threshold norm of the shortest code, independent centres for CSQ).
* ``fine-tune``: single-length models, plain nested and full NHL, fine-tune regime.

The settings: the grid trains the standard 15 epochs on Fashion-MNIST (:data:`GRID_EPOCHS`, the
check of the per-method targets) and 5 on the 100-class set; every other study trains 5 epochs on
every dataset (:data:`STUDY_EPOCHS`), the shortest setting in which every loss is well above
chance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from .. import experiments
from ..config import TrainConfig
from ..losses import available as available_losses
from ..losses.targets import nested_csq_centers
from ..recipes import SEARCH
from .baselines import with_baselines
from .grid import comparison_configs
from .tables import center_design_of, centers_table, hparams_table, runs_table

#: Datasets of the studies: 10 classes, 100 classes, multi-label.
DATASETS = ("fashion-mnist", "fashion-mnist-100", "fashion-mnist-multilabel")


#: Datasets of the full eight-method grid.
GRID_DATASETS = ("fashion-mnist", "fashion-mnist-100")


#: Datasets of the ``seeds`` study (single-length against nested, three seeds).
SEEDS_DATASETS = DATASETS


#: One centre-based and two pairwise losses, for the seed and ablation studies.
REPRESENTATIVE = ("csq", "dhn", "lcdsh")


SEEDS = (0, 1, 2)


VARIANTS = ("plain", "weighting", "distill", "nhl")


#: Epochs per dataset in the seed, ablation, centre and lambda studies (and the tutorial's full
#: setting): 5 everywhere (what these studies cost is in their stamps and README.md).
STUDY_EPOCHS = {"fashion-mnist": 5, "fashion-mnist-100": 5, "fashion-mnist-multilabel": 5}


#: Epochs of the eight-method ``grid`` (the check of the per-method targets of nhl.recipes): the
#: standard 15 on Fashion-MNIST, 5 on the 100-class set.
GRID_EPOCHS = {"fashion-mnist": 15, "fashion-mnist-100": 5}


#: Distillation strengths of the ``lambda`` study (0 = plain, 1 = the method's lambda_D).
LAMBDAS = (0.0, 0.01, 0.1, 1.0)


#: Methods of the ``lambda`` study: where distillation hurts (DHN) and where it does not (CSQ).
LAMBDA_METHODS = ("dhn", "csq")


#: Learning rates of the search behind nhl.recipes (recorded there with the search's setting).
SEARCH_LRS = SEARCH["learning rates"]


#: CSQ centre constructions compared in the ``centers`` study (plus independent centres).
CENTER_DESIGNS = ("hadamard", "sylvester", "random")


def study_config(dataset: str, **changes) -> TrainConfig:
    """The studies' setting for ``dataset`` (its :data:`STUDY_EPOCHS`), nested NHL by default."""
    return TrainConfig(dataset=dataset, epochs=STUDY_EPOCHS[dataset], **changes)


def grid_config(dataset: str, **changes) -> TrainConfig:
    """The grid's setting for ``dataset`` (its :data:`GRID_EPOCHS`), nested NHL by default."""
    return TrainConfig(dataset=dataset, epochs=GRID_EPOCHS[dataset], **changes)


# ------------------------------------------------------------------------------ the studies
def hparams_configs() -> list[TrainConfig]:
    return [
        TrainConfig(method=m, lr=lr) for m in available_losses() for lr in SEARCH_LRS
    ]


def grid_configs() -> list[TrainConfig]:
    return [
        c
        for d in GRID_DATASETS
        for m in available_losses()
        for c in comparison_configs(grid_config(d, method=m))
    ]


def seeds_configs() -> list[TrainConfig]:
    return [
        c
        for d in SEEDS_DATASETS
        for m in REPRESENTATIVE
        for s in SEEDS
        for c in comparison_configs(study_config(d, method=m, seed=s))
    ]


def ablation_configs() -> list[TrainConfig]:
    return [
        study_config(d, method=m, seed=s).variant(v)
        for d in DATASETS
        for m in REPRESENTATIVE
        for s in SEEDS
        for v in VARIANTS
    ]


def lambda_configs() -> list[TrainConfig]:
    """Distillation only (uniform weights), lambda_D from :data:`LAMBDAS`, on the 100-class set."""
    return [
        study_config("fashion-mnist-100", method=m, seed=s).variant("plain").replace(distill=lam)
        for m in LAMBDA_METHODS
        for s in SEEDS
        for lam in LAMBDAS
    ]


#: Memory-bank losses and the bank-refresh policies compared in the ``bank`` study.
BANK_METHODS = ("dhn", "dsh", "dbdh")


BANK_REFRESH = ("none", "start", "epoch")


def bank_configs() -> list[TrainConfig]:
    """Nested NHL on Fashion-MNIST (the studies' 5 epochs) with each bank-refresh policy, 3 seeds."""
    return [
        study_config("fashion-mnist", method=m, seed=s, bank_refresh=b)
        for m in BANK_METHODS
        for s in SEEDS
        for b in BANK_REFRESH
    ]


def centers_configs() -> list[TrainConfig]:
    """Per dataset: the default centres, each other design that gives different centres, and
    independent per-length centres; three seeds on ``fashion-mnist-100`` (where the choice for
    C > 2 L is made), one elsewhere. The default is run as ``center_design="auto"`` so the
    ``seeds`` study's runs are reused."""
    out = []
    for d in DATASETS:
        n_classes = experiments.get_splits(study_config(d)).n_classes
        base = study_config(d, method="csq")
        default = center_design_of(base, n_classes)
        designs: dict[str, object] = {}
        for design in (default, *[x for x in CENTER_DESIGNS if x != default]):
            c = nested_csq_centers(n_classes, base.bit_list, design=design)
            if not any(bool((c == other).all()) for other in designs.values()):  # skip repeats
                designs[design] = c
        seeds = SEEDS if d == "fashion-mnist-100" else SEEDS[:1]
        for s in seeds:
            for design in designs:
                out.append(base.replace(seed=s, center_design="auto" if design == default else design))
            out.append(base.replace(seed=s, nested_targets=False))
    return out


# ------------------------------------------------------------------ the paper's regime
#: Training to convergence, the same rule for single-length and nested models: validation
#: every ``eval_every`` epochs, stop after ``patience`` checks without improvement, at most
#: ``epochs`` epochs (docs/method.md §6).
REGIME_SETTINGS = {
    "frozen": {"epochs": 40, "eval_every": 2, "patience": 3},
    "fine-tune": {"epochs": 20, "eval_every": 2, "patience": 2},
}


#: Base losses whose per-length terms compare with a memory bank of the whole training split:
#: in the frozen regime their step costs about 50 ms on fashion-mnist-100 (10,000 items) against
#: 1-2 ms for the others, and they converge slowly (20-40 epochs), so a nested run costs minutes.
#: The budget (issue 21: all new studies within 3-4 hours here) gives them the lambda_D search on
#: Fashion-MNIST and, in the ``frozen`` study, the cells of :data:`FROZEN_BANK` (README.md).
BANK_LOSSES = ("dhn", "dsh", "dbdh")


#: The memory-bank losses of the ``frozen`` study per dataset, three seeds each: all three on
#: Fashion-MNIST (5,000 training items, about 3 minutes a seed), DHN alone on fashion-mnist-100
#: (about 10 minutes a seed); none on the multi-label set.
FROZEN_BANK = {"fashion-mnist": BANK_LOSSES, "fashion-mnist-100": ("dhn",)}


#: In-batch losses of the frozen studies (every dataset, every seed).
IN_BATCH = tuple(m for m in available_losses() if m not in BANK_LOSSES)


#: The frozen ablation: one centre-based and two in-batch pairwise losses.
FROZEN_REPRESENTATIVE = ("csq", "dtsh", "lcdsh")


#: Seeds of the frozen ablation per dataset.
ABLATION_SEEDS = {"fashion-mnist": 5, "fashion-mnist-100": 10, "fashion-mnist-multilabel": 5}


#: Fine-tune study: CSQ and an in-batch pairwise loss on the 100-class set, CSQ on the
#: multi-label set (:data:`FINE_TUNE_SEEDS`).
FINE_TUNE_METHODS = ("csq", "dpn")
FINE_TUNE_DATASETS = ("fashion-mnist-100", "fashion-mnist-multilabel")


def regime_config(dataset: str, regime: str, **changes) -> TrainConfig:
    """The paper's-regime setting (:data:`REGIME_SETTINGS`) for ``dataset``, full NHL by default
    (lambda_D: the method's recorded value in the regime)."""
    return TrainConfig(dataset=dataset, regime=regime, **{**REGIME_SETTINGS[regime], **changes})


def _with_plain(config: TrainConfig) -> list[TrainConfig]:
    """Full NHL, its single-length baselines and the plain nested model."""
    return [*comparison_configs(config), config.variant("plain")]


def lambda_frozen_configs() -> list[TrainConfig]:
    """Full NHL at every lambda_D of the search, seed 0: the in-batch losses on the three
    datasets, the memory-bank losses on Fashion-MNIST only (their cheapest set: 5,000 items)."""
    from ..recipes import DISTILL_CHOICES

    in_batch = [regime_config(d, "frozen", method=m, distill=lam)
                for d in DATASETS for m in IN_BATCH for lam in DISTILL_CHOICES]
    return in_batch + [regime_config("fashion-mnist", "frozen", method=m, distill=lam)
                       for m in BANK_LOSSES for lam in DISTILL_CHOICES]


def frozen_configs() -> list[TrainConfig]:
    runs = [c for d in DATASETS for m in IN_BATCH for s in SEEDS
            for c in _with_plain(regime_config(d, "frozen", method=m, seed=s))]
    bank = [c for d, losses in FROZEN_BANK.items() for m in losses for s in SEEDS
            for c in _with_plain(regime_config(d, "frozen", method=m, seed=s))]
    return runs + bank


def frozen_ablation_configs() -> list[TrainConfig]:
    """The four variants at the method's recorded lambda_D; where that is 0 (distillation chosen
    off), the distillation variants use the reference code's 0.1, so that they differ from
    plain and weighting-only. Plus CSQ with the reference code's variants."""
    from ..recipes import distill_strength

    def ablation(d: str, m: str, s: int, v: str) -> TrainConfig:
        c = regime_config(d, "frozen", method=m, seed=s).variant(v)
        return c.replace(distill=0.1) if c.distill == 0 and v in ("distill", "nhl") \
            and distill_strength(m, "frozen") == 0 else c

    runs = [ablation(d, m, s, v)
            for d in DATASETS for m in FROZEN_REPRESENTATIVE for s in range(ABLATION_SEEDS[d]) for v in VARIANTS]
    reference = [regime_config("fashion-mnist-100", "frozen", method="csq", seed=s, **change)
                 for s in SEEDS for change in ({"norm": "shortest"}, {"nested_targets": False})]
    return runs + reference


#: Seeds of the fine-tune study per dataset and method (a fine-tune run costs one to two minutes
#: here; the multi-label set gets CSQ only).
FINE_TUNE_SEEDS = {("fashion-mnist-100", "csq"): SEEDS, ("fashion-mnist-100", "dpn"): SEEDS,
                   ("fashion-mnist-multilabel", "csq"): SEEDS}


def lambda_fine_tune_configs() -> list[TrainConfig]:
    """Full NHL at every lambda_D of the search, fine-tune regime, seed 0, for the fine-tune
    study's losses on fashion-mnist-100."""
    from ..recipes import DISTILL_CHOICES

    return [regime_config("fashion-mnist-100", "fine-tune", method=m, distill=lam)
            for m in FINE_TUNE_METHODS for lam in DISTILL_CHOICES]


def fine_tune_configs() -> list[TrainConfig]:
    return [c for d in FINE_TUNE_DATASETS for m in FINE_TUNE_METHODS for s in FINE_TUNE_SEEDS.get((d, m), ())
            for c in _with_plain(regime_config(d, "fine-tune", method=m, seed=s))]


@dataclass(frozen=True)
class Study:
    """A named study: the runs it needs and the table made from them."""

    name: str
    what: str
    configs: Callable[[], list[TrainConfig]]
    table: Callable[[Sequence[experiments.RunResult]], pd.DataFrame] = runs_table


STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study("hparams", "learning-rate search on the Fashion-MNIST validation split", hparams_configs, hparams_table),
        Study("grid", "eight losses, single-length vs nested NHL, one seed", grid_configs),
        Study("seeds", "three losses, single-length vs nested NHL, three seeds", seeds_configs),
        Study("ablation", "plain / weighting / distillation / both, three seeds", ablation_configs),
        Study("centers", "CSQ centre constructions", centers_configs, centers_table),
        Study("lambda", "distillation strength lambda_D on the 100-class set", lambda_configs),
        Study("bank", "when memory banks are written from the current network", bank_configs),
        Study("lambda-frozen", "lambda_D per method on the validation split, frozen regime", lambda_frozen_configs,
              hparams_table),
        Study("frozen", "single-length vs plain nested vs full NHL, frozen pretrained backbone", frozen_configs,
              with_baselines),
        Study("frozen-ablation", "plain / weighting / distillation / both and the reference variants, frozen",
              frozen_ablation_configs),
        Study("lambda-fine-tune", "lambda_D on the validation split, fine-tune regime", lambda_fine_tune_configs,
              hparams_table),
        Study("fine-tune", "single-length vs plain nested vs full NHL, fine-tuned pretrained backbone",
              fine_tune_configs, with_baselines),
    )
}
