"""Does the weighting help? Paired differences and verdicts from an ablation-shaped table."""

import numpy as np
import pandas as pd
import pytest

from nhl.studies import weighting_effect as we

SEEDS = (0, 1, 2)


def _table(shift=-0.02, noise=0.001):
    """Two datasets, csq (rule never fires: identical variants) and dhn (weighting shifts mAP)."""
    rng = np.random.default_rng(0)
    rows = []
    for d in ("fashion-mnist", "fashion-mnist-100"):
        for m in ("csq", "dhn"):
            for s in SEEDS:
                base = 0.3 + 0.1 * s
                for v in ("plain", "weighting", "distill", "nhl"):
                    uses = v in ("weighting", "nhl") and m == "dhn"
                    fire = 0.5 + 0.1 * s if uses else 0.0
                    for b in (8, 16, 32):
                        delta = 0.0 if m == "csq" or v != "weighting" else (
                            shift + rng.normal(0, noise) if d == "fashion-mnist-100" else rng.normal(0, 0.01))
                        rows.append({"dataset": d, "method": m, "variant": v, "seed": s, "bits": b,
                                     "mAP": base + 0.01 * b / 8 + delta, "firing": fire})
    return pd.DataFrame(rows)


def test_effect_pairs_by_seed_and_adds_the_firing_rate():
    eff = we.effect(_table())
    assert list(eff.columns) == list(we.COLUMNS)
    assert len(eff) == 2 * 2 * 4  # datasets x methods x (3 lengths + mean)
    csq = eff[eff["method"] == "csq"]
    assert (csq["diff"] == 0).all() and (csq["sign"] == "0").all() and (csq["firing"] == 0).all()
    dhn = eff[(eff["dataset"] == "fashion-mnist-100") & (eff["method"] == "dhn")].set_index("bits")
    assert dhn.loc[8, "diff"] == pytest.approx(-0.02, abs=0.003) and dhn.loc[8, "sign"] == "-"
    assert dhn.loc[8, "n"] == 3 and dhn.loc[8, "firing"] == pytest.approx(0.6)  # mean over seeds
    assert dhn.loc["mean", "sign"] == "-"


def test_effect_is_empty_when_not_computed():
    for table in (None, _table().query("variant != 'weighting'"), _table().drop(columns="mAP")):
        eff = we.effect(table)
        assert eff.empty and list(eff.columns) == list(we.COLUMNS)
    assert we.effect_table(we.effect(None)).empty
    assert we.verdicts(we.effect(None)) == ["No weighting vs plain runs in the table yet: not yet computed."]


def test_effect_table_is_plain_text_with_signs_and_firing():
    t = we.effect_table(we.effect(_table()))
    assert list(t.columns) == ["8", "16", "32", "mean", "rule fired"]
    cell = t.loc[("fashion-mnist-100", "dhn"), "8"]
    assert cell.startswith("-0.02") and cell.endswith("(-)") and " ± " in cell
    assert t.loc[("fashion-mnist", "csq"), "rule fired"] == "0.0%"
    assert t.loc[("fashion-mnist", "dhn"), "rule fired"] == "60.0%"


def test_verdicts_say_where_the_rule_lowers_the_metric():
    lines = we.verdicts(we.effect(_table()))
    assert len(lines) == 4
    lowered = [x for x in lines if x.startswith("fashion-mnist-100, dhn")][0]
    assert "weighting lowers mAP at 8, 16, 32 bits against plain" in lowered and "60.0%" in lowered
    calm = [x for x in lines if x.startswith("fashion-mnist, dhn")][0]
    assert "changes mAP at no length beyond the 95 % interval" in calm
    raised = we.verdicts(we.effect(_table(shift=+0.02)))
    assert any("raises mAP at 8, 16, 32 bits" in x for x in raised)
    other = we.verdicts(we.effect(_table(), "nhl", "distill"), "nhl", "distill")
    # nhl and distill identical in the fake table: no length for dhn, the same runs for csq
    assert all("no length" in x for x in other if ", dhn:" in x)
    assert all("are the same training" in x for x in other if ", csq:" in x)


def test_a_rule_that_never_fired_changes_nothing():
    """Never "raises mAP ... the rule fired in 0.0 %": with no firing the runs are the same."""
    lines = we.verdicts(we.effect(_table()))
    for x in [x for x in lines if ", csq:" in x]:
        assert "the rule never fired (0.0% of the steps), so weighting and plain are the same training" in x
        assert "every difference is exactly 0 (3 seeds)" in x and "raises" not in x and "lowers" not in x
    t = we.effect_table(we.effect(_table()))
    assert (t.loc[("fashion-mnist", "csq")].drop("rule fired") == "0 (same runs)").all()
    assert t.loc[("fashion-mnist-100", "dhn"), "8"] != "0 (same runs)"
    eff = we.effect(_table())
    assert list(we.identical(eff)) == list(eff["method"] == "csq")
    # rounding noise where the rule never fired: said to be noise, never a rise or a fall
    noisy = _table()
    csq_w = (noisy["method"] == "csq") & (noisy["variant"] == "weighting")
    noisy.loc[csq_w, "mAP"] += 0.01 + 1e-4 * noisy.loc[csq_w, "seed"]
    line = [x for x in we.verdicts(we.effect(noisy)) if x.startswith("fashion-mnist, csq")][0]
    assert "cannot have changed anything" in line and "run-to-run noise" in line and "raises" not in line


def test_rare_firing_never_reads_as_zero():
    assert we.share(0.0) == "0.0%" and we.share(0.137) == "13.7%" and we.share(0.0004) == "0.04%"


def test_firing_table_pivots_methods_by_dataset():
    t = we.firing_table(_table())
    assert list(t.index) == ["csq", "dhn"] and list(t.columns) == ["fashion-mnist", "fashion-mnist-100"]
    assert t.loc["dhn", "fashion-mnist-100"] == pytest.approx(0.6) and t.loc["csq", "fashion-mnist"] == 0
    assert we.firing_table(None).empty and we.firing_table(_table().query("variant == 'plain'")).empty


def test_load_ablation_reads_the_converged_table_without_reference_variants(tmp_path, monkeypatch):
    import json

    folder = tmp_path / "results"
    folder.mkdir()
    table = _table().assign(norm="own", nested_targets=True)
    extra = table[(table["variant"] == "weighting") & (table["method"] == "csq")]
    table = pd.concat([table, extra.assign(norm="shortest", mAP=0.0), extra.assign(nested_targets=False, mAP=0.0)])
    table.to_csv(folder / "frozen-ablation.csv", index=False)
    (folder / "frozen-ablation.json").write_text(json.dumps({
        "what": "the ablation, frozen", "command": "python -m nhl study frozen-ablation", "date": "2026-12-06",
        "package_version": "0", "threads per worker": 1}))
    monkeypatch.setenv("NHL_RESULTS", str(folder))
    assert we.DEFAULT_STUDY == "frozen-ablation"
    got, why = we.load_ablation()
    assert why.startswith("results/frozen-ablation.csv: the ablation, frozen")
    assert len(got) == len(_table()) and (got["norm"] == "own").all() and got["nested_targets"].all()
    eff = we.effect(got)
    assert (eff.loc[eff["method"] == "csq", "diff"] == 0).all()  # the reference rows are not paired in
    everything, _ = we.load_ablation(reference_variants=True)
    assert len(everything) == len(table)


def test_load_ablation_says_not_yet_computed(tmp_path, monkeypatch):
    monkeypatch.setenv("NHL_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr("nhl.studies.results.STUDIES", {"ablation": _FakeStudy()})
    table, why = we.load_ablation(root=tmp_path / "runs", data_root=tmp_path / "data")
    assert table is None and "frozen-ablation.csv is not yet computed" in why
    table, why = we.load_ablation(root=tmp_path / "runs", data_root=tmp_path / "data", name="ablation")
    assert table is None and "ablation.csv is not yet computed" in why


class _FakeStudy:
    """A study whose only run is never in the cache (so ``get`` falls back to the missing CSV)."""

    def configs(self):
        from nhl.config import TrainConfig

        return [TrainConfig(dataset="digits", protocol="quick", epochs=1)]

    def table(self, runs):  # pragma: no cover - never reached: the run is missing
        raise AssertionError


def test_full_nhl_firing_reads_the_full_runs_of_every_method():
    rows = []
    for m, full_variant, fire in (("csq", "weighting", 0.0), ("lcdsh", "nhl", 0.5), ("dhn", "nhl", 0.9)):
        for s in SEEDS:
            for v in ("single", "plain", full_variant):
                for b in (8, 16):
                    rows.append({"dataset": "d" if m != "dhn" else "e", "method": m, "variant": v, "seed": s,
                                 "bits": b, "mAP": 0.5, "firing": fire + 0.1 * s if v == full_variant else 0.0,
                                 "full NHL": v == full_variant})
    rows.append({"dataset": "d", "method": "classifier", "variant": "classifier", "seed": 0, "bits": 8,
                 "mAP": 0.4, "firing": float("nan"), "full NHL": float("nan")})
    t = we.full_nhl_firing(pd.DataFrame(rows))
    assert list(t.index) == ["csq", "dhn", "lcdsh"] and list(t.columns) == ["d", "e"]
    assert t.loc["csq", "d"] == pytest.approx(0.1) and t.loc["lcdsh", "d"] == pytest.approx(0.6)
    assert t.loc["dhn", "e"] == pytest.approx(1.0) and np.isnan(t.loc["dhn", "d"])
    assert we.full_nhl_firing(None).empty and we.full_nhl_firing(_table()).empty
