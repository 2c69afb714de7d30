"""Nested vs single-length comparisons in each dataset's metric (nhl.studies.comparisons) on hand-made tables."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from nhl.metrics import map_per_length
from nhl.studies import comparisons
from nhl.studies.statistics import paired, t_quantile

DATASETS = (("ten", None), ("hundred", 1000))


def _table(gain=0.01, drop=()):
    """Two datasets, two methods, three seeds, two lengths; nested = single * (1 + gain) + seed noise."""
    rows = []
    for ds, k in DATASETS:
        for m in ("csq", "dhn"):
            for s in (0, 1, 2):
                for b in (8, 16):
                    single = 0.5 + 0.1 * (b == 16) + 0.01 * s
                    for v, val in (("single", single), ("nhl", single * (1 + gain) + 0.001 * (s - 1))):
                        if (ds, m, s, v) in drop:
                            continue
                        rows.append({"dataset": ds, "method": m, "variant": v, "seed": s, "bits": b,
                                     "mAP": val, "topk": k, "mAP@K": val + (0.1 if k else 0.0)})
    return pd.DataFrame(rows)


def test_metric_columns_follow_each_dataset_convention():
    t = comparisons.metric_columns(_table())
    assert t.to_dict("records") == [
        {"dataset": "ten", "column": "mAP", "metric": "mAP@ALL", "convention": True},
        {"dataset": "hundred", "column": "mAP@K", "metric": "mAP@1000", "convention": True},
        {"dataset": "hundred", "column": "mAP", "metric": "mAP@ALL", "convention": False},
    ]
    assert len(comparisons.metric_columns(_table(), all_too=False)) == 2
    bad = _table()
    bad.loc[bad.index[-1], "topk"] = 5000
    with pytest.raises(ValueError, match="cut-off"):
        comparisons.metric_columns(bad)
    with pytest.raises(ValueError, match="lacks columns"):
        comparisons.metric_columns(bad.drop(columns="topk"))


def test_paired_by_metric_is_results_paired_per_dataset_and_metric():
    t = _table()
    d = comparisons.paired_by_metric(t)
    assert list(dict.fromkeys(zip(d["dataset"], d["metric"]))) == [
        ("ten", "mAP@ALL"), ("hundred", "mAP@1000"), ("hundred", "mAP@ALL")]
    ref = paired(t[t["dataset"] == "hundred"], "nhl", "single", by=("dataset", "method"), value="mAP@K")
    got = d[(d["dataset"] == "hundred") & (d["metric"] == "mAP@1000")].reset_index(drop=True)
    np.testing.assert_allclose(got["diff"], ref["diff"])
    np.testing.assert_allclose(got["ci95"], ref["ci95"])
    assert set(d["bits"]) == {8, 16, "mean"}


def test_partial_tables_keep_only_complete_pairs():
    t = _table(drop={("ten", "dhn", 2, "nhl"), ("hundred", "csq", 0, "single")})
    pairs = comparisons.complete_pairs(t)
    assert len(pairs) == len(t) - 2 * 2  # the partner rows of the two missing runs go too
    d = comparisons.paired_by_metric(t)
    n = d.set_index(["dataset", "metric", "method", "bits"])["n"]
    assert n[("ten", "mAP@ALL", "dhn", 8)] == 2 and n[("ten", "mAP@ALL", "csq", 8)] == 3
    with pytest.raises(ValueError, match="no \\(dataset"):
        comparisons.paired_by_metric(t[t["variant"] == "nhl"])


def test_relative_gain_by_hand():
    t = _table(gain=0.02)
    g = comparisons.relative_gain(t[t["dataset"] == "ten"], by=("dataset",), value="mAP")
    # per seed: mean over methods and lengths of 100 (nested / single - 1)
    per_seed = []
    for s in (0, 1, 2):
        vals = [100 * ((0.5 + 0.1 * (b == 16) + 0.01 * s) * 1.02 + 0.001 * (s - 1))
                / (0.5 + 0.1 * (b == 16) + 0.01 * s) - 100 for b in (8, 16)]
        per_seed.append(np.mean(vals))
    row = g.iloc[0]
    assert row["gain %"] == pytest.approx(np.mean(per_seed))
    assert row["ci95"] == pytest.approx(t_quantile(3) * np.std(per_seed, ddof=1) / np.sqrt(3))
    assert row["n"] == 3 and row["cells"] == 4 and row["sign"] == "+"
    bym = comparisons.relative_gain_by_metric(t)
    assert bym["dataset"].tolist() == ["ten", "hundred", "hundred", "all datasets"]
    assert bym["metric"].tolist() == ["mAP@ALL", "mAP@1000", "mAP@ALL", "convention"]
    assert bym.iloc[-1]["cells"] == 8  # both datasets, both methods, both lengths
    neg = comparisons.relative_gain(_table(gain=-0.05), by=("dataset",))
    assert (neg["sign"] == "-").all()


def test_sign_counts_and_ci_cells():
    d = comparisons.paired_by_metric(_table(gain=0.02))
    counts = comparisons.sign_counts(d)
    assert counts.columns.tolist() == ["better", "undecided", "worse", "cells"]
    assert (counts["cells"] == 4).all() and (counts["better"] == 4).all()
    cells = comparisons.ci_cells(d)
    assert cells.index.names == ["dataset", "metric", "method"]
    assert cells.columns.tolist() == [8, 16, "mean"]
    assert cells.index[0] == ("ten", "mAP@ALL", "csq")  # the table's order, not alphabetical
    first = d.iloc[0]
    assert cells.iloc[0, 0] == f"{first['diff']:+.4f} ± {first['ci95']:.4f} *"


def test_study_table_says_when_it_is_not_yet_computed(monkeypatch):
    import nhl.studies.results

    def missing(name):
        raise FileNotFoundError("results/seeds.csv does not exist")

    monkeypatch.setattr(nhl.studies.results, "get", missing)
    table, message = comparisons.study_table("seeds")
    assert table is None and "not yet computed" in message and "/" not in message.split("(")[0]
    monkeypatch.setattr(nhl.studies.results, "get", lambda name: (_table()[lambda t: t["variant"] == "nhl"], "src"))
    table, message = comparisons.study_table("seeds")
    assert table is None and "not yet computed" in message
    monkeypatch.setattr(nhl.studies.results, "get", lambda name: (_table(drop={("ten", "dhn", 2, "nhl")}), "src"))
    table, message = comparisons.study_table("seeds")
    assert len(table) == len(_table()) - 4
    assert "ten dhn (2 seeds)" in message and "hundred csq (3 seeds)" in message


def _run(bits, codes, labels, maps, seed=0, topk=None):
    return SimpleNamespace(
        bit_list=tuple(bits), topk=topk, map_at=maps, config=SimpleNamespace(seed=seed),
        codes={"query": codes[:4], "database": codes, "query_labels": labels[:4], "database_labels": labels})


def test_truncation_reads_prefixes_of_the_longest_single_model():
    rng = np.random.default_rng(0)
    codes = np.where(rng.random((30, 16)) > 0.5, 1, -1).astype(np.int8)
    labels = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, 30)]
    nested = _run((8, 16), codes, labels, {8: 0.6, 16: 0.7}, seed=2)
    long_single = _run((16,), codes, labels, {16: 0.65})
    singles = {8: _run((8,), codes, labels, {8: 0.55}), 16: long_single}
    t = comparisons.truncation(nested, long_single, singles)
    expected = map_per_length(codes[:4], codes, labels[:4], labels, (8, 16))
    got = t.set_index(["variant", "bits"])["mAP"]
    assert got[("truncated", 8)] == pytest.approx(expected[8])
    assert got[("truncated", 16)] == pytest.approx(expected[16])
    assert (got[("nhl", 8)], got[("single", 8)], got[("single", 16)]) == (0.6, 0.55, 0.65)
    assert set(t["seed"]) == {2}
    with pytest.raises(ValueError, match="single-length run at 16 bits"):
        comparisons.truncation(nested, singles[8])
