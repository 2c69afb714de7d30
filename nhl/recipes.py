"""Per-method training recipes: what each base loss trains with unless told otherwise.

One table, :data:`RECIPES`, holds for every base method (docs/method.md §2) the learning rate
and the base-loss hyper-parameters that :class:`~nhl.config.TrainConfig` uses when they are not
given (``TrainConfig(method="dhn")`` with nothing else set trains with DHN's recorded values; so
do ``python -m nhl train --method dhn`` and ``python -m nhl grid``). Every value says where it
comes from:

* ``"reference code"``: the public NHL implementation's default (the values docs/method.md §2 lists);
* ``"paper"``: the method's original paper;
* ``"validation search"``: chosen here by the mean validation mAP over lengths (validation
  queries carved from the training data, never the query set), see :data:`SEARCH`.

The search is reproducible with ``python -m nhl study hparams``; its table is committed as
``results/hparams.csv``. :func:`table` gives the recipes as a DataFrame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from .validation import check_choice

#: How the validation search was run (the grid each learning rate was picked from).
SEARCH = {
    "dataset": "fashion-mnist",
    "protocol": "default",
    "variant": "nhl (nested, all five lengths)",
    "epochs": 15,
    "selection": "mean validation mAP@ALL over lengths at the selected epoch",
    "learning rates": (3e-4, 1e-3, 3e-3, 1e-2),
    "results": "results/hparams.csv",
}

REFERENCE = "reference code"
PAPER = "paper"
SEARCHED = "validation search"
SOURCES = (REFERENCE, PAPER, SEARCHED)


@dataclass(frozen=True)
class Recipe:
    """A method's default learning rate and loss hyper-parameters, each with its source."""

    method: str
    lr: float
    hyper: tuple[tuple[str, Any], ...]
    sources: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        known = {"lr", *(k for k, _ in self.hyper)}
        for name, source in self.sources:
            check_choice(source, SOURCES, f"source of {self.method}.{name}")
        missing = known - {k for k, _ in self.sources}
        if missing:
            raise ValueError(f"recipe {self.method!r} gives no source for {sorted(missing)}")

    @property
    def hyper_dict(self) -> dict[str, Any]:
        return dict(self.hyper)

    def source(self, name: str) -> str:
        return dict(self.sources)[name]


def _recipe(method: str, lr: float, lr_source: str, **hyper: tuple[Any, str]) -> Recipe:
    return Recipe(
        method,
        lr,
        tuple((k, v) for k, (v, _) in sorted(hyper.items())),
        (("lr", lr_source), *((k, s) for k, (_, s) in sorted(hyper.items()))),
    )


#: The recorded recipe of every base method (lowercase names, as ``nhl.losses.available()``).
RECIPES: dict[str, Recipe] = {
    r.method: r
    for r in (
        _recipe("csq", 3e-3, SEARCHED, lam=(1e-4, REFERENCE)),
        _recipe("dbdh", 1e-3, SEARCHED, alpha=(0.1, REFERENCE)),
        _recipe("dch", 3e-3, SEARCHED, gamma=(20.0, REFERENCE), lam=(0.1, REFERENCE)),
        _recipe("dhn", 1e-3, SEARCHED, alpha=(0.1, REFERENCE)),
        _recipe("dpn", 3e-3, SEARCHED, m=(1.0, REFERENCE), p=(0.5, REFERENCE)),
        _recipe("dsh", 3e-3, SEARCHED, alpha=(0.1, REFERENCE)),
        _recipe("dtsh", 1e-3, SEARCHED, margin=(5.0, REFERENCE), lam=(1.0, REFERENCE)),
        _recipe("lcdsh", 1e-3, SEARCHED, lam=(3.0, REFERENCE)),
    )
}


#: Distillation strength lambda_D per training regime and method: ``(value, source)``.
#: Scratch: the value every scratch study trained with (the paper's lambda_D = 1; not chosen
#: again: the scratch studies answer "how fast does each learn" and stay as they were).
#: Frozen and fine-tune: chosen on the validation split from :data:`DISTILL_CHOICES` by
#: :func:`nhl.studies.report.lambda_choice` on the search tables of :data:`DISTILL_SEARCH`
#: (full NHL, seed 0): frozen on the three datasets (the memory-bank losses on Fashion-MNIST
#: only), fine-tune on fashion-mnist-100 for CSQ and DPN (the other losses keep the reference
#: code's 0.1 there: a fine-tune run costs about a minute). The differences between values are
#: small (at most 0.013 validation mAP); ties go to the smaller lambda_D.
DISTILL_CHOICES = (0.0, 0.01, 0.1, 1.0)
DISTILL_SEARCH = {
    "frozen": "results/lambda-frozen.csv",
    "fine-tune": "results/lambda-fine-tune.csv",
    "selection": "mean validation mAP@ALL over lengths and datasets, ties to the smaller",
}
_FROZEN_CHOICE = {"csq": 0.0, "dbdh": 1.0, "dch": 0.0, "dhn": 0.01, "dpn": 1.0, "dsh": 0.1, "dtsh": 0.1, "lcdsh": 0.1}
_FINE_TUNE_CHOICE = {"csq": 1.0, "dpn": 1.0}
DISTILL: dict[str, dict[str, tuple[float, str]]] = {
    "scratch": {m: (1.0, PAPER) for m in RECIPES},
    "frozen": {m: (_FROZEN_CHOICE[m], SEARCHED) for m in RECIPES},
    "fine-tune": {m: (_FINE_TUNE_CHOICE[m], SEARCHED) if m in _FINE_TUNE_CHOICE else (0.1, REFERENCE)
                  for m in RECIPES},
}


def distill_strength(method: str, regime: str = "scratch") -> float:
    """The recorded lambda_D of ``method`` in ``regime`` (:data:`DISTILL`)."""
    check_choice(regime, sorted(DISTILL), "regime")
    return DISTILL[regime][recipe(method).method][0]


def recipe(method: str) -> Recipe:
    """The recorded recipe of ``method`` (case-insensitive)."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a string such as 'csq', got {method!r}")
    check_choice(method.lower(), sorted(RECIPES), "method")
    return RECIPES[method.lower()]


def table() -> pd.DataFrame:
    """One row per method and parameter: value and where it comes from."""
    rows = []
    for r in RECIPES.values():
        rows.append({"method": r.method, "parameter": "lr", "value": r.lr, "source": r.source("lr")})
        rows += [
            {"method": r.method, "parameter": k, "value": v, "source": r.source(k)}
            for k, v in r.hyper
        ]
        rows += [
            {"method": r.method, "parameter": f"lambda_D ({regime})", "value": v, "source": src}
            for regime, values in DISTILL.items()
            for v, src in [values[r.method]]
        ]
    return pd.DataFrame(rows)
