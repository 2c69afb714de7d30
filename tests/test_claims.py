"""nhl.studies.claims: the paper's claims from study tables, and the recorded lambda_D."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nhl.recipes import DISTILL, SEARCHED
from nhl.studies import claims, results
from nhl.studies.report import lambda_choice


def _table(offset: float, seeds=(0, 1, 2), methods=("csq", "dtsh")) -> pd.DataFrame:
    """A study table where full NHL is the single-length model plus ``offset`` at every length,
    with seed-dependent noise that cancels in the pairs."""
    rows = []
    for m in methods:
        for s in seeds:
            for b in (8, 16, 32, 64, 128):
                base = 0.2 + b / 1000 + 0.01 * s
                for variant, value, secs in (("single", base, 10.0), ("nhl", base + offset, 12.5),
                                             ("plain", base + offset / 2, 12.0)):
                    rows.append({"dataset": "fashion-mnist-100", "method": m, "variant": variant, "seed": s,
                                 "bits": b, "mAP": value, "topk": 1000, "mAP@K": value, "train s": secs,
                                 "epochs": 40, "epochs trained": 20, "best epoch": 12, "lambda_D": 0.1,
                                 "norm": "own", "nested_targets": True, "full NHL": variant == "nhl"})
    return pd.DataFrame(rows)


def test_gains_are_paired_differences_with_relative_ones_beside():
    g = claims.gains(_table(0.02)).iloc[0]
    assert g["gain"] == pytest.approx(0.02) and g["gain ci95"] == pytest.approx(0, abs=1e-12)
    assert g["sign"] == "+" and g["metric"] == "mAP@1000" and g["seeds"] == 3
    assert g["gain %"] > 0
    assert claims.gains(_table(-0.01)).iloc[0]["sign"] == "-"


def test_speedup_is_the_singles_seconds_over_the_nested_run():
    sp = claims.speedup(_table(0.0))
    assert sp["speed-up"].tolist() == pytest.approx([5 * 10 / 12.5] * 2)


def test_convergence_counts_each_run_once():
    c = claims.convergence(_table(0.0)).iloc[0]
    assert c["runs"] == 2 * 3 * (5 + 2)  # 5 single-length runs and 2 nested per method and seed
    assert c["selected before the last epoch"] == 1.0 and c["stopped before the maximum"] == 1.0


def test_full_nhl_as_recorded_is_labelled_nhl():
    t = _table(0.01)
    t.loc[t["variant"] == "nhl", "variant"] = "weighting"  # lambda_D = 0 recorded: only the weighting acts
    assert set(claims.as_recorded(t)["variant"]) == {"single", "nhl", "plain"}


def test_verdicts_read_the_committed_tables():
    table = claims.verdicts(results.load("frozen"), results.load("frozen-ablation"), results.load("fine-tune"))
    assert {"+3.4 % mAP over single-length models", "ablation order (full >= each half >= plain)"} <= set(table["claim"])
    assert table["verdict"].notna().all()


@pytest.mark.parametrize("regime", ["frozen", "fine-tune"])
def test_recorded_lambda_is_the_validation_choice(regime):
    """nhl.recipes.DISTILL[regime] holds what lambda_choice reads from the committed search."""
    chosen = lambda_choice(results.load(f"lambda-{regime}"))["chosen"]
    searched = {m: v for m, (v, src) in DISTILL[regime].items() if src == SEARCHED}
    assert searched, f"no {regime} lambda_D is recorded as a validation choice"
    for method, value in searched.items():
        assert np.isclose(chosen[method], value), method
    assert set(chosen.index) == set(searched)


def test_readme_section_is_what_the_tables_give():
    """README's generated part of "The paper's claims, measured here" is claims.markdown() of the
    committed tables: the two never disagree."""
    from nhl.utils import project_root

    text = (project_root() / "README.md").read_text()
    start, end = "<!-- claims:start -->\n", "<!-- claims:end -->"
    assert start in text and end in text
    section = text[text.index(start) + len(start): text.index(end)]
    assert section.strip() == claims.markdown().strip()
