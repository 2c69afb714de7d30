"""Summary tables of the committed studies, on a synthetic long table with known answers."""

import pandas as pd
import pytest

from nhl.studies import claims, report

BITS = (8, 16, 32)


def _long(rows):
    base = dict(dataset="d", topk=None, epochs=1, lr=1e-3, lambda_D=1.0, firing=0.0)
    return pd.DataFrame([{**base, **r} for r in rows])


def _grid():
    rows = []
    for m, (single, nested) in {"a": (0.5, 0.6), "b": (0.65, 0.62)}.items():
        for b in BITS:
            rows.append(dict(method=m, variant="single", seed=0, bits=b, mAP=single))
            rows.append(dict(method=m, variant="nhl", seed=0, bits=b, mAP=nested))
    return _long(rows)


def test_grid_table_and_target_check():
    g = report.grid_table(_grid(), "d")
    assert g.loc["a", "16 nested"] == 0.6 and g.loc["b", "mean gain"] == pytest.approx(-0.03)
    t = report.target_check(_grid(), "d")
    assert not t.loc[("a", "single"), "target met"]
    assert t.loc[("b", "nested"), "target met"]
    with pytest.raises(ValueError, match="no grid rows"):
        report.grid_table(_grid(), "other")


def test_ablation_table_order_and_firing():
    rows = []
    effect = {"plain": 0.0, "weighting": 0.01, "distill": 0.02, "nhl": 0.03}
    for s in range(3):
        for v, e in effect.items():
            for b in BITS:
                rows.append(dict(method="m", variant=v, seed=s, bits=b, mAP=0.5 + e + 0.001 * s,
                                 firing=0.4 if v in ("weighting", "nhl") else 0.0))
    t = report.ablation_table(_long(rows)).loc[("d", "m")]
    assert t["nhl - plain"] == pytest.approx(0.03) and t["weighting - plain"] == pytest.approx(0.01)
    assert t["rule fired (nhl)"] == pytest.approx(0.4) and t["paper's order holds"]


def test_paired_and_lambda_tables():
    rows = []
    for s in range(3):
        for b in BITS:
            rows.append(dict(method="m", variant="single", seed=s, bits=b, mAP=0.5))
            rows.append(dict(method="m", variant="nhl", seed=s, bits=b, mAP=0.52 + 0.01 * s))
    t = report.paired_table(_long(rows), "nhl", "single").loc[("d", "m")]
    assert t["nhl - single"] == pytest.approx(0.03) and t["seeds"] == 3
    assert t["sign per length"] == "+ + +"
    lam = _long([dict(method="m", variant="custom", seed=s, bits=b, mAP=0.1 * lam_, lambda_D=lam_)
                 for s in range(2) for b in BITS for lam_ in (0.0, 1.0)])
    out = report.lambda_table(lam)
    assert out.loc[("m", 1.0), "mean"] == pytest.approx(0.1)


# ------------------------------------------------------------------ the ablation order
def _ablation(effects, noise=0.0005, firing=0.3, same=()):
    """Three seeds; ``effects[variant]`` added to a seed-dependent base; variants in ``same``
    copy ``plain`` (weighting) or ``distill`` (nhl) exactly, as when the rule never fires."""
    rows = []
    for s in range(3):
        for b in BITS:
            base = 0.5 + 0.01 * s + 0.001 * b / 8
            vals = {v: base + e + noise * ((s + b) % 3 - 1) * (i + 1)
                    for i, (v, e) in enumerate(effects.items())}
            if "weighting" in same:
                vals["weighting"] = vals["plain"]
            if "nhl" in same:
                vals["nhl"] = vals["distill"]
            for v, x in vals.items():
                rows.append(dict(method="m", variant=v, seed=s, bits=b, mAP=x,
                                 firing=firing if v in ("weighting", "nhl") else 0.0))
    return _long(rows)


def test_ablation_order_verdicts():
    t = _ablation({"plain": 0.0, "weighting": 0.0001, "distill": -0.03, "nhl": 0.02})
    order = report.ablation_order(t)
    assert len(order) == 4 and order["seeds"].eq(3).all()
    v = order["verdict"].xs(("d", "m"))
    assert v["full NHL >= without weighting"] == "holds"  # nhl - distill = +0.05
    assert v["without weighting >= without both"] == "fails"  # distill - plain = -0.03
    assert v["without distillation >= without both"].startswith("within noise")
    d = order["difference"].xs(("d", "m"))
    assert d["full NHL >= without distillation"] == pytest.approx(0.0199, abs=1e-3)
    wide = report.order_verdicts(order)
    assert list(wide.columns) == [c for _, _, c in report.ORDER_CLAIMS]


def test_ablation_order_identical_runs_when_the_rule_never_fires():
    t = _ablation({"plain": 0.0, "weighting": 0.0, "distill": 0.01, "nhl": 0.0},
                  firing=0.0, same=("weighting", "nhl"))
    v = report.ablation_order(t)["verdict"].xs(("d", "m"))
    assert v["without distillation >= without both"] == "identical runs"
    assert v["full NHL >= without weighting"] == "identical runs"
    rules = report.rule_table(t).loc[("d", "m")]
    assert rules["rule fired (nhl)"] == 0 and rules["max |weighting - plain|"] == 0
    assert rules["max |nhl - distill|"] == 0


def test_rule_table_differences_and_firing():
    t = _ablation({"plain": 0.0, "weighting": 0.004, "distill": 0.0, "nhl": 0.002}, firing=0.25)
    r = report.rule_table(t).loc[("d", "m")]
    assert r["rule fired (weighting)"] == pytest.approx(0.25)
    assert r["max |weighting - plain|"] > 0.003
    with pytest.raises(ValueError, match="variants"):
        report.rule_table(t[t["variant"] != "nhl"])


def _lambda_rows():
    rows = []
    for s in range(3):
        for lam in (0.0, 0.1, 1.0):
            for b in BITS:
                for m, slope in (("dhn", -0.05), ("csq", 0.0)):
                    rows.append(dict(method=m, variant="custom", seed=s, bits=b, lambda_D=lam,
                                     mAP=0.3 + 0.01 * s + slope * lam + 0.001 * ((s * b) % 3)))
    return _long(rows)


def test_lambda_stats_paired_and_effects():
    t = _lambda_rows()
    st = report.lambda_stats(t)
    row = st[(st["method"] == "dhn") & (st["lambda_D"] == 1.0) & (st["bits"] == 8)].iloc[0]
    assert row["n"] == 3 and row["mean"] == pytest.approx(0.25 + 0.01 + 0.001 * (0 + 2 + 1) / 3)
    assert row["ci95"] > 0
    p = report.lambda_paired(t)
    assert set(p["lambda_D"]) == {0.1, 1.0}
    mean = p[(p["method"] == "dhn") & (p["lambda_D"] == 1.0) & (p["bits"] == "mean")].iloc[0]
    assert mean["diff"] == pytest.approx(-0.05) and mean["sign"] == "-"
    eff = report.lambda_effects(t)
    assert eff.loc[("dhn", 1.0), "sign per length"] == "- - -"
    assert eff.loc[("csq", 1.0), "minus lambda_D = 0"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="lambda_D = 0"):
        report.lambda_paired(t[t["lambda_D"] > 0])


def test_gain_vs_noise_uses_own_ci_or_the_yardstick():
    grid_rows, seed_rows = [], []
    for m, gain in (("a", 0.05), ("b", 0.001), ("c", 0.02)):
        for b in BITS:
            grid_rows += [dict(method=m, variant="single", seed=0, bits=b, mAP=0.5),
                          dict(method=m, variant="nhl", seed=0, bits=b, mAP=0.5 + gain)]
    for m, gains in (("a", (0.04, 0.05, 0.06)), ("c", (-0.01, 0.02, 0.05))):
        for s, gain in enumerate(gains):
            for b in BITS:
                seed_rows += [dict(method=m, variant="single", seed=s, bits=b, mAP=0.5),
                              dict(method=m, variant="nhl", seed=s, bits=b, mAP=0.5 + gain)]
    out = report.gain_vs_noise(_long(grid_rows), _long(seed_rows)).xs("d")
    assert out.loc["a", "exceeds noise"] == "yes"  # 0.05 +- 0.025
    assert out.loc["c", "exceeds noise"] == "no"  # 0.02 +- 0.075
    assert out.loc["b", "exceeds noise"] == "no (yardstick)"
    # per-seed sd of the gain: a 0.01, c 0.03 -> median 0.02; b's 0.001 < 2 x 0.02
    assert out.loc["b", "typical seed sd"] == pytest.approx(0.02)
    assert out.loc["b", "grid gain (seed 0)"] == pytest.approx(0.001)


def test_variant_means_own_metric_and_scratch_vs_converged():
    rows = []
    for s in range(3):
        for b in BITS:
            for v, x in {"single": 0.2, "plain": 0.3, "weighting": 0.25, "truncated": 0.1}.items():
                rows.append(dict(dataset="h", method="m", variant=v, seed=s, bits=b, mAP=x + 0.1,
                                 topk=1000, **{"mAP@K": x + 0.01 * s, "full NHL": v == "weighting"}))
    conv = pd.DataFrame(rows)
    mean, sd, metric = claims.variant_means(conv, "h", "m")
    assert metric == "mAP@1000" and list(mean.columns) == ["single", "plain", "nhl", "truncated"]
    assert list(mean.index) == list(BITS)
    assert mean.loc[8, "nhl"] == pytest.approx(0.26) and sd.loc[8, "plain"] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="no rows"):
        claims.variant_means(conv, "h", "other")
    grid = _long([dict(dataset="h", method=m, variant=v, seed=0, bits=b, mAP=x)
                  for m, (s_, n_) in {"m": (0.5, 0.4), "z": (0.5, 0.6)}.items()
                  for b in BITS for v, x in (("single", s_), ("nhl", n_))])
    t = claims.scratch_vs_converged(grid, conv)
    assert list(t.index) == [("h", "m")]  # z is not in the converged table
    r = t.loc[("h", "m")]
    assert r["scratch gain"] == pytest.approx(-0.1) and r["converged gain"] == pytest.approx(0.05)
    assert r["seeds"] == 3 and r["converged verdict"] == "better"
    assert r["scratch agrees"] is not None and not r["scratch agrees"]
    assert r["scratch epochs"] == 1
    with pytest.raises(ValueError, match="share no"):
        claims.scratch_vs_converged(grid[grid["method"] == "z"], conv)


def _converged(gain_nhl=0.02, gain_plain=-0.01, seeds=3):
    rows = []
    for s in range(seeds):
        for m in ("m", "n"):
            for b in BITS:
                for v, x in {"single": 0.5, "plain": 0.5 + gain_plain, "nhl": 0.5 + gain_nhl}.items():
                    x += 0.001 * s * (v != "single")
                    rows.append(dict(dataset="h", method=m, variant=v, seed=s, bits=b, mAP=x, topk=1000,
                                     **{"mAP@K": x}))
    return pd.DataFrame(rows)


def test_gain_summary_and_loss_verdicts():
    t = claims.gain_summary({"frozen": _converged(), "fine-tune": _converged(seeds=1)})
    assert list(t.index.get_level_values("regime").unique()) == ["frozen", "fine-tune"]
    r = t.loc[("frozen", "h", "full NHL")]
    assert r["metric"] == "mAP@1000" and r["losses x seeds"] == "2 x 3" and r["verdict"] == "better"
    assert r["gain (mAP)"].startswith("+0.021 ± ")
    assert t.loc[("frozen", "h", "plain nested"), "verdict"] == "worse"
    one = t.loc[("fine-tune", "h", "full NHL")]
    assert one["verdict"] == "one seed, no interval" and one["gain (mAP)"] == "+0.020 (one seed)"
    pm = claims.per_method(pd.concat([_converged(), _converged(seeds=1).assign(method="o")]))
    v = claims.loss_verdicts(pm).loc[("h", "mAP@1000")]
    assert v["better"] == "m, n" and v["worse"] == "-" and v["one seed, no interval"] == "o"
