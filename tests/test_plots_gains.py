"""Figures of paired gains per length and of the baselines (nhl.plots.gains), and the tables
they draw (nhl.studies.claims.regime_gains, trick_effects, decision_guide), on small synthetic
study tables with known answers."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from nhl.plots import gains as gain_plots  # noqa: E402
from nhl.studies import claims, timing  # noqa: E402

BITS = (8, 16, 32)


def _table(effect: dict[str, float], datasets=("fashion-mnist",), seeds=3, methods=("csq", "dpn")):
    rows = []
    for d in datasets:
        for m in methods:
            for s in range(seeds):
                for v, e in effect.items():
                    for b in BITS:
                        x = 0.5 + 0.01 * s + 0.001 * b / 8 + e + 0.0003 * ((s + b) % 3)
                        rows.append(dict(dataset=d, method=m, variant=v, seed=s, bits=b, mAP=x,
                                         **{"mAP@K": x}, topk=None, firing=0.25 if v in ("weighting", "nhl") else 0.0,
                                         lambda_D=0.1, **{"train s": 10.0 if v == "single" else 20.0}))
    return pd.DataFrame(rows)


def test_regime_gains_and_trick_effects_recover_the_planted_differences():
    frozen = _table({"single": 0.0, "plain": 0.02, "nhl": 0.03})
    fine = _table({"single": 0.0, "plain": -0.01, "nhl": 0.0})
    g = claims.regime_gains({"frozen": frozen, "fine-tune": fine}, "plain").set_index("regime")
    assert g.loc["frozen", "gain"] == pytest.approx(0.02) and g.loc["frozen", "sign"] == "+"
    assert g.loc["fine-tune", "gain"] == pytest.approx(-0.01) and g.loc["fine-tune", "sign"] == "-"
    ab = _table({"plain": 0.0, "weighting": 0.0, "distill": -0.02, "nhl": 0.01})
    e = claims.trick_effects(ab).set_index(["method", "variant"])
    assert e.loc[("csq", "distill"), "diff"] == pytest.approx(-0.02)
    assert e.loc[("csq", "distill"), "sign"] == "-" and e.loc[("csq", "nhl"), "sign"] == "+"
    assert e.loc[("csq", "weighting"), "firing"] == pytest.approx(0.25)


def test_decision_guide_per_loss():
    t = _table({"single": 0.0, "plain": 0.0, "nhl": 0.02, "truncated": -0.1})
    guide = claims.decision_guide(t).set_index("loss")
    assert list(guide.index) == ["csq", "dpn"]
    assert guide.loc["csq", "sign per dataset"] == "+"
    assert guide.loc["csq", "NHL - truncated at 8 bits"] == pytest.approx(0.12)
    # three single runs of 10 s against one nested run of 20 s
    assert guide.loc["csq", "speed-up"] == pytest.approx(1.5)


def test_figures_draw_one_panel_per_dataset_with_labelled_axes():
    t = _table({"single": 0.0, "plain": 0.01, "nhl": 0.02, "truncated": -0.1},
               datasets=("fashion-mnist", "fashion-mnist-100"))
    axes = gain_plots.gain_per_length_plot({"frozen": claims.per_length(t, "plain")})
    assert len(axes) == 2 and all(ax.get_xlabel() == "code length (bits)" for ax in axes)
    assert axes[0].figure.legends, "one legend for the whole figure"
    base = claims.baselines(t)
    axes = gain_plots.baselines_plot(base)
    assert [ax.get_title() for ax in axes] == ["fashion-mnist", "fashion-mnist-100"]
    assert all(ax.get_ylabel() for ax in axes)
    ax = gain_plots.trick_plot(claims.trick_effects(
        _table({"plain": 0.0, "weighting": 0.0, "distill": 0.01, "nhl": 0.01})))
    assert len(ax.get_yticklabels()) == 2 and ax.get_xlabel().startswith("mAP@ALL")
    plt.close("all")
    with pytest.raises(ValueError, match="nothing to plot"):
        gain_plots.gain_per_length_plot({"x": claims.per_length(t, "plain")}, metric="mAP@1000")


def test_converged_speedup_factors_the_speed_up_of_a_claims_table():
    t = _table({"single": 0.0, "nhl": 0.0})
    t["epochs trained"] = [8 if v == "single" else 16 for v in t["variant"]]
    parts = timing.converged_speedup(t).set_index("method")
    # 3 single runs of 10 s (8 epochs) against one nested run of 20 s (16 epochs): each nested epoch
    # costs as much as a single one (per epoch: K = 3), and nested training runs twice as many epochs
    assert parts.loc["csq", "K"] == 3 and parts.loc["csq", "speed-up"] == pytest.approx(1.5)
    assert parts.loc["csq", "speed-up"] == pytest.approx(claims.speedup(t).set_index("method").loc["csq", "speed-up"])
    assert parts.loc["csq", "per epoch"] == pytest.approx(3.0)
    assert parts.loc["csq", "epochs"] == pytest.approx(0.5)
