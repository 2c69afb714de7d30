"""The ablation explorer on a small synthetic ablation table: numbers, redraws, controls, errors.

The table has the schema of ``results/frozen-ablation.csv`` (one row per run and code length):
two datasets (one with a mAP@K cut-off), two base methods each (``csq`` on both), four variants,
three seeds, five lengths, the frozen regime with early stopping; ``firing`` is one value per run,
0 for variants without the weighting.
"""

import base64
import html
import itertools
import json
import re

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from nhl.studies import statistics  # noqa: E402
from nhl.tutorial.ablation_explorer import (  # noqa: E402
    REQUIRED_COLUMNS,
    VARIANT_COLOURS,
    AblationExplorer,
    AblationView,
    label_reference_variants,
    load_table,
)

VARIANTS = ("plain", "weighting", "distill", "nhl")
LENGTHS = (8, 16, 32, 64, 128)
RUNS = (  # dataset, method, topk
    ("fashion-mnist", "csq", None),
    ("fashion-mnist", "dhn", None),
    ("fashion-mnist-100", "csq", 1000),
    ("fashion-mnist-100", "lcdsh", 1000),
)


def synthetic_table(seeds=(0, 1, 2), seed: int = 0) -> pd.DataFrame:
    """An ablation table with the committed schema and random (seeded) numbers."""
    rng = np.random.default_rng(seed)
    combos = list(itertools.product(range(len(RUNS)), range(len(VARIANTS)), seeds, LENGTHS))
    c, v, s, b = (np.array(x) for x in zip(*combos))
    s_pos = np.searchsorted(np.array(seeds), s)
    topk = np.array([np.nan if k is None else k for _, _, k in RUNS])[c]
    m_ap = 0.4 + 0.05 * np.log2(b) + 0.01 * v + rng.normal(0, 0.02, len(combos))
    per_run = rng.uniform(0.2, 0.6, (len(RUNS), len(VARIANTS), len(seeds)))
    weighted = np.isin(np.array(VARIANTS)[v], ["weighting", "nhl"])
    return pd.DataFrame({
        "dataset": np.array([d for d, _, _ in RUNS])[c],
        "method": np.array([m for _, m, _ in RUNS])[c],
        "variant": np.array(VARIANTS)[v],
        "seed": s,
        "bits": b,
        "mAP": m_ap,
        "mAP index": m_ap - 0.001,
        "topk": topk,
        "mAP@K": np.where(np.isnan(topk), np.nan, m_ap + 0.1 + rng.normal(0, 0.01, len(combos))),
        "val mAP": m_ap + 0.01,
        "firing": np.where(weighted, per_run[c, v, s_pos], 0.0),
        "train s": 10.0,
        "epochs": 40,
        "epochs trained": 12 + 2 * s + (c % 2) * 4,
        "best epoch": 4,
        "regime": "frozen",
        "lr": 1e-3,
        "lambda_D": np.where(np.isin(np.array(VARIANTS)[v], ["distill", "nhl"]), 1.0, 0.0),
        "norm": "own",
        "center_design": "auto",
        "nested_targets": True,
    })


def with_reference_rows(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus the committed table's reference-code rows: CSQ on fashion-mnist-100 as
    ``weighting`` with ``norm="shortest"`` and with ``nested_targets=False``, seeds 0 and 1."""
    base = table[(table["dataset"] == "fashion-mnist-100") & (table["method"] == "csq")
                 & (table["variant"] == "weighting") & (table["seed"] < 2)]
    norm = base.assign(norm="shortest", firing=0.0)
    centres = base.assign(nested_targets=False, mAP=base["mAP"] - 0.02, firing=0.05)
    return pd.concat([table, norm, centres], ignore_index=True)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_table()


@pytest.fixture
def explorer(table) -> AblationExplorer:
    return AblationExplorer(table=table)


@pytest.fixture(scope="module")
def shared(table) -> AblationExplorer:
    """One explorer for tests that leave it as they found it."""
    return AblationExplorer(table=table)


def _attrs(ex: AblationExplorer) -> dict[str, str]:
    m = re.search(r'<div class="nhl-ablation-values"([^>]*)>', ex.values.value)
    assert m, ex.values.value[:300]
    return {k: html.unescape(v) for k, v in re.findall(r'(data-[a-z]+)="([^"]*)"', m.group(1))}


def _slice(table, dataset, method):
    return table[(table["dataset"] == dataset) & (table["method"] == method)]


# ------------------------------------------------------------------------------ initial state
def test_initial_state_is_rendered(explorer):
    ex = explorer
    assert isinstance(ex.last, AblationView)
    assert "nhl-ablation" in ex.widget._dom_classes
    (out,) = ex.plots.outputs
    png = base64.b64decode(out["data"]["image/png"])
    assert png.startswith(b"\x89PNG")
    a = _attrs(ex)
    assert (a["data-dataset"], a["data-method"], a["data-bits"], a["data-metric"]) == (
        "fashion-mnist", "csq", "32", "mAP")  # first dataset and method, middle length
    assert a["data-variants"] == "plain weighting distill nhl"
    assert a["data-lengths"] == "8 16 32 64 128"
    values = json.loads(a["data-values"])
    assert set(values["mean"]) == set(VARIANTS)
    assert ex.last.summary in html.unescape(ex.values.value)


# ------------------------------------------------------------------------------ the numbers
@pytest.mark.parametrize("dataset,method,metric", [("fashion-mnist", "dhn", "mAP"),
                                                   ("fashion-mnist-100", "lcdsh", "mAP@K")])
def test_means_and_sample_std_equal_pandas(explorer, table, dataset, method, metric):
    view = explorer.update(dataset=dataset, method=method, bits=16, metric=metric)
    rows = _slice(table, dataset, method)
    direct = rows.pivot_table(index="bits", columns="variant", values=metric, aggfunc="mean")
    pd.testing.assert_frame_equal(view.mean, direct[list(VARIANTS)], check_names=False)
    # sample standard deviation (ddof=1) over the three seeds, computed by hand
    for (v, b), g in rows.groupby(["variant", "bits"]):
        x = g[metric].to_numpy()
        assert view.sd.at[b, v] == pytest.approx(np.sqrt(((x - x.mean()) ** 2).sum() / (len(x) - 1)))
        assert view.sd.at[b, v] != pytest.approx(x.std(ddof=0))
    assert (view.seeds == 3).all()
    values = json.loads(_attrs(explorer)["data-values"])
    assert values["mean"]["nhl"] == pytest.approx(direct["nhl"].tolist(), abs=1e-6)
    assert values["at"]["plain"] == pytest.approx(direct.at[16, "plain"], abs=1e-6)


@pytest.mark.parametrize("bits,metric", [(8, "mAP"), (64, "mAP@K")])
def test_paired_difference_equals_results_paired(explorer, table, bits, metric):
    view = explorer.update(dataset="fashion-mnist-100", method="csq", bits=bits, metric=metric)
    rows = _slice(table, "fashion-mnist-100", "csq")
    assert list(view.paired.index) == ["weighting", "distill", "nhl"]
    for v in view.paired.index:
        ref = statistics.paired(rows, v, "plain", value=metric)
        ref = ref[ref["bits"].astype(str) == str(bits)].iloc[0]
        for col in ("diff", "sd", "n", "ci95"):
            assert view.paired.at[v, col] == pytest.approx(ref[col])
        # and by hand: mean of per-seed differences, t(2) half-width
        w = rows[rows["bits"] == bits].pivot(index="seed", columns="variant", values=metric)
        d = (w[v] - w["plain"]).to_numpy()
        assert view.paired.at[v, "diff"] == pytest.approx(d.mean())
        assert view.paired.at[v, "ci95"] == pytest.approx(4.302653 * d.std(ddof=1) / np.sqrt(3),
                                                         rel=1e-5)
    values = json.loads(_attrs(explorer)["data-values"])
    assert values["diff"]["nhl"] == pytest.approx(view.paired.at["nhl", "diff"], abs=1e-6)


def test_firing_rate_mean_and_range_over_seeds(explorer, table):
    view = explorer.update(dataset="fashion-mnist", method="dhn")
    runs = _slice(table, "fashion-mnist", "dhn").drop_duplicates(["variant", "seed"])
    assert list(view.firing.index) == ["weighting", "nhl"]
    for v in ("weighting", "nhl"):
        f = runs.loc[runs["variant"] == v, "firing"]
        assert view.firing.loc[v, ["mean", "min", "max"]].tolist() == pytest.approx(
            [f.mean(), f.min(), f.max()])
    nhl_rate = runs.loc[runs["variant"] == "nhl", "firing"].mean()
    assert f"the rule fired in {100 * nhl_rate:.0f} % of steps" in view.summary
    # hiding the weighting variants hides their firing rates
    assert view.firing.index.tolist() == ["weighting", "nhl"]
    assert explorer.update(variants=["plain", "distill"]).firing.empty


def test_summary_line(explorer, table):
    view = explorer.update(dataset="fashion-mnist-100", method="csq", bits=16)
    p = view.paired.loc["nhl"]
    assert view.summary.startswith(
        f"fashion-mnist-100 / csq at 16 bits: nhl - plain = {p['diff']:+.3f} ± {p['ci95']:.3f} "
        "(95 % CI, 3 seeds); the rule fired in ")
    view = explorer.update(variants=["plain", "distill"])
    assert "distill - plain" in view.summary and "fired" not in view.summary


def test_one_seed_has_no_error_bars_and_says_so():
    ex = AblationExplorer(table=synthetic_table(seeds=(0,)))
    view = ex.last
    assert view.sd.isna().all().all()
    assert view.paired["ci95"].isna().all()
    assert "(1 seed, no CI)" in view.summary
    assert json.loads(_attrs(ex)["data-values"])["sd"]["nhl"] == [None] * 5  # valid JSON


# ------------------------------------------------------------------------------ controls
def test_options_follow_the_dataset(explorer):
    ex = explorer
    assert list(ex.method_dropdown.options) == ["csq", "dhn"]
    assert [v for _, v in ex.metric_dropdown.options] == ["mAP"]  # no cut-off on fashion-mnist
    ex.update(method="dhn")
    ex.dataset_dropdown.value = "fashion-mnist-100"  # as a click in the browser does
    assert list(ex.method_dropdown.options) == ["csq", "lcdsh"]
    assert ex.method_dropdown.value == "csq"  # dhn is not there: the first method
    assert list(ex.metric_dropdown.options) == [("mAP", "mAP"), ("mAP@1000", "mAP@K")]
    assert _attrs(ex)["data-dataset"] == "fashion-mnist-100"
    ex.update(metric="mAP@K")
    ex.dataset_dropdown.value = "fashion-mnist"  # no cut-off: back to mAP
    assert ex.metric_dropdown.value == "mAP" and _attrs(ex)["data-metric"] == "mAP"
    assert ex.methods("fashion-mnist-100") == ("csq", "lcdsh")
    assert ex.metrics("fashion-mnist-100") == ("mAP", "mAP@K")


def test_data_attributes_change_after_update(explorer):
    ex = explorer
    before = _attrs(ex)
    ex.update(bits=64)
    after = _attrs(ex)
    assert after["data-bits"] == "64" and after["data-values"] != before["data-values"]
    ex.update(method="dhn")
    again = _attrs(ex)
    assert again["data-method"] == "dhn" and again["data-values"] != after["data-values"]
    assert again["data-bits"] == "64"  # the length is kept
    ex.update(variants=["nhl", "plain"])  # any order; shown in display order
    assert _attrs(ex)["data-variants"] == "plain nhl"
    ex.update(dataset="fashion-mnist-100", metric="mAP@K")
    last = _attrs(ex)
    assert (last["data-dataset"], last["data-metric"]) == ("fashion-mnist-100", "mAP@K")


def test_widget_controls_redraw(explorer):
    ex = explorer
    ex.bits_slider.value = 8
    assert ex.last.bits == 8 and _attrs(ex)["data-bits"] == "8"
    ex.variant_buttons["weighting"].value = False
    assert ex.last.variants == ("plain", "distill", "nhl")
    assert list(ex.last.firing.index) == ["nhl"]
    for button in ex.variant_buttons.values():  # everything off: empty panels, no error
        button.value = False
    assert ex.last.variants == () and "no variant selected" in ex.last.summary
    assert _attrs(ex)["data-variants"] == ""


# ------------------------------------------------------------------------------ the figure
def test_static_figure_has_labelled_axes_and_consistent_colours(explorer):
    from matplotlib.colors import to_hex

    explorer.update(dataset="fashion-mnist-100", method="lcdsh", bits=16, metric="mAP@K")
    fig = explorer.figure()
    ax_len, ax_diff, ax_fire = fig.axes
    assert ax_len.get_xlabel() == "code length (bits)" and ax_len.get_ylabel().startswith("mAP@1000")
    lo = ax_len.get_ylim()[0]  # a y axis that does not start at 0 is flagged in its label
    assert (lo > 0) == ("not 0" in ax_len.get_ylabel())
    assert "fashion-mnist-100" in ax_len.get_title() and "lcdsh" in ax_len.get_title()
    assert "sample std" in ax_len.get_legend().get_title().get_text()
    assert "95 % CI" in ax_diff.get_title() and "16 bits" in ax_diff.get_title()
    assert ax_diff.get_ylabel() == "mAP@1000 - plain (same seed)"
    assert ax_fire.get_ylabel() and ax_fire.get_title()
    assert explorer.last.summary == fig._suptitle.get_text()
    # one colour per variant in every panel; no two variants at the same x (markers visible)
    lines = {c.get_label(): c.lines[0] for c in ax_len.containers}  # errorbar: data line first
    assert list(lines) == list(VARIANTS)
    assert {v: to_hex(line.get_color()) for v, line in lines.items()} == {
        v: VARIANT_COLOURS[v] for v in VARIANTS}
    xs = np.array([line.get_xdata() for line in lines.values()])
    assert len({tuple(np.round(x, 6)) for x in xs}) == len(VARIANTS)
    assert np.allclose(np.exp2(np.round(np.log2(xs))), np.array(LENGTHS)[None, :])
    diff_colours = [to_hex(c.lines[0].get_color()) for c in ax_diff.containers]
    assert diff_colours == [VARIANT_COLOURS[v] for v in ("weighting", "distill", "nhl")]
    assert [to_hex(p.get_facecolor()) for p in ax_fire.patches] == [
        VARIANT_COLOURS["weighting"], VARIANT_COLOURS["nhl"]]
    assert any(line.get_ydata()[0] == 0 for line in ax_diff.get_lines())  # the zero line


def test_snapshot_is_static_html(shared):
    snap = shared.snapshot()
    assert "data:image/png;base64," in snap.data
    assert shared.last.summary in html.unescape(snap.data)
    assert "nhl-ablation-values" not in snap.data  # the browser test finds only the live widget


# ------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("kwargs,message", [
    ({"dataset": "cifar10"}, "valid values are: fashion-mnist, fashion-mnist-100"),
    ({"method": "dpn"}, "valid values are: csq, dhn"),
    ({"dataset": "fashion-mnist-100", "method": "dhn"}, "valid values are: csq, lcdsh"),
    ({"bits": 12}, "valid values are: 8, 16, 32, 64, 128"),
    ({"bits": True}, "valid values are: 8, 16, 32, 64, 128"),
    ({"variants": ["nhl", "both"]}, "valid values are: plain, weighting, distill, nhl"),
    ({"variants": []}, "variants is empty"),
    ({"metric": "mAP@K"}, "fashion-mnist has no cut-off"),
    ({"metric": "precision"}, "valid values are: mAP"),
])
def test_bad_controls_raise_with_valid_values(shared, kwargs, message):
    before = _attrs(shared)
    with pytest.raises(ValueError, match=re.escape(message)):
        shared.update(**kwargs)
    assert _attrs(shared) == before  # nothing changed
    with pytest.raises(ValueError, match=re.escape(message)):
        AblationExplorer(table=synthetic_table(), **kwargs)


def test_bad_tables_raise(table):
    with pytest.raises(ValueError, match=r"lacks the columns \['firing'\]"):
        AblationExplorer(table=table.drop(columns="firing"))
    with pytest.raises(ValueError, match="no rows"):
        AblationExplorer(table=table.iloc[:0])
    with pytest.raises(ValueError, match="repeat a"):
        AblationExplorer(table=pd.concat([table, table.iloc[:2]]))
    with pytest.raises(TypeError, match="DataFrame"):
        AblationExplorer(table=table.to_dict("records"))
    with pytest.raises(ValueError, match="reference 'single'.*valid values are: plain"):
        AblationExplorer(table=table, reference="single")
    assert set(REQUIRED_COLUMNS) <= set(table.columns)


def test_without_cutoff_columns_only_map(table):
    ex = AblationExplorer(table=table.drop(columns=["topk", "mAP@K"]), dataset="fashion-mnist-100")
    assert ex.metrics("fashion-mnist-100") == ("mAP",)


# ------------------------------------------------------------------------------ committed tables
def test_default_reads_the_committed_table(tmp_path, monkeypatch, table):
    monkeypatch.setenv("NHL_RESULTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m nhl study frozen-ablation"):
        AblationExplorer()
    with_reference_rows(table).to_csv(tmp_path / "frozen-ablation.csv", index=False)
    ex = AblationExplorer()
    assert ex.datasets == ("fashion-mnist", "fashion-mnist-100")
    assert ex.all_variants == ("plain", "weighting", "distill", "nhl", "shortest-norm",
                               "independent-centres")
    assert ex.last.mean.shape == (5, 4)  # the reference variants start switched off
    assert ex.source is None  # no stamp next to the table
    stamp = {"what": "plain / weighting / distillation / both and the reference variants, frozen",
             "command": "python -m nhl study frozen-ablation", "date": "2026-01-02T00:00:00+00:00",
             "package_version": "0.3.0", "threads per worker": 1}
    (tmp_path / "frozen-ablation.json").write_text(json.dumps(stamp))
    ex = AblationExplorer()
    assert ex.source.startswith("results/frozen-ablation.csv: plain / weighting")
    assert html.escape(ex.source) in ex.values.value
    ex = AblationExplorer(table=table, source="computed from 108 runs")
    assert "computed from 108 runs" in ex.values.value
    # the frozen study's single-length baselines as a further variant, for the ablation's runs only
    single = table[table["variant"] == "nhl"].assign(variant="single", mAP=0.5)
    other = single[single["seed"] == 0].assign(seed=7)  # a seed the ablation lacks
    pd.concat([single, other, table[table["variant"] == "nhl"]]).to_csv(
        tmp_path / "frozen.csv", index=False)
    both = load_table(with_single=True)
    both = both[~both["variant"].isin(["shortest-norm", "independent-centres"])]
    assert len(both) == len(table) + len(single)
    ex = AblationExplorer(table=both)
    assert ex.all_variants == ("single", "plain", "weighting", "distill", "nhl")
    assert ex.last.paired.index.tolist() == ["single", "weighting", "distill", "nhl"]
    ex = AblationExplorer(table=both, reference="single", variants=["single", "nhl"])
    assert ex.last.paired.index.tolist() == ["nhl"]
    assert ex.last.summary.split(": ")[1].startswith("nhl - single = ")


# ------------------------------------------------------------------------------ the converged table
def test_reference_code_variants_are_variants_of_their_own(table):
    raw = with_reference_rows(table)
    with pytest.raises(ValueError, match="label_reference_variants"):
        AblationExplorer(table=raw)  # two rows per (dataset, method, variant, seed, bits)
    labelled = label_reference_variants(raw)
    assert labelled is not raw and (raw["variant"] != "shortest-norm").all()  # the input is kept
    counts = labelled["variant"].value_counts()
    assert counts["shortest-norm"] == counts["independent-centres"] == 2 * len(LENGTHS)
    assert label_reference_variants(table) is table  # nothing to label: unchanged
    ex = AblationExplorer(table=labelled, dataset="fashion-mnist-100", method="csq")
    assert ex.last.variants == VARIANTS  # off at the start
    assert ex.last.note.endswith("; 3 seeds")  # the note counts the variants shown
    view = ex.update(variants=list(VARIANTS) + ["shortest-norm", "independent-centres"], bits=16)
    assert view.variants[-2:] == ("shortest-norm", "independent-centres")
    assert view.note.endswith("; 2-3 seeds (by variant)")
    assert view.seeds["independent-centres"] == 2
    rows = labelled[(labelled["dataset"] == "fashion-mnist-100") & (labelled["method"] == "csq")]
    ref = statistics.paired(rows, "independent-centres", "plain")
    assert view.paired.at["independent-centres", "diff"] == pytest.approx(
        ref.loc[ref["bits"].astype(str) == "16", "diff"].iloc[0])
    assert view.paired.at["independent-centres", "n"] == 2  # paired on the seeds both have
    # they use the weighting: their firing rates are shown
    assert view.firing.loc["independent-centres", "mean"] == pytest.approx(0.05)
    assert view.firing.loc["shortest-norm", "mean"] == 0
    # other datasets lack them: nothing drawn for them, no error
    other = ex.update(dataset="fashion-mnist", method="dhn")
    assert other.variants == VARIANTS


def test_note_names_the_regime_epochs_and_seeds(explorer, table):
    view = explorer.update(dataset="fashion-mnist-100", method="lcdsh")
    rows = _slice(table, "fashion-mnist-100", "lcdsh")
    lo, hi = int(rows["epochs trained"].min()), int(rows["epochs trained"].max())
    assert view.note == (f"frozen regime, trained to convergence (early stopping: {lo}-{hi} of at "
                         "most 40 epochs); 3 seeds")
    assert 'class="nhl-ablation-note"' in explorer.values.value
    assert html.escape(view.note) in explorer.values.value
    scratch = table.drop(columns=["regime", "epochs trained"]).assign(epochs=5)
    assert AblationExplorer(table=scratch).last.note == "scratch regime, 5 epochs; 3 seeds"


def test_dropdowns_read_the_table(table):
    more = pd.concat([table, _slice(table, "fashion-mnist", "dhn").assign(method="dtsh")],
                     ignore_index=True)
    ex = AblationExplorer(table=more)
    assert list(ex.method_dropdown.options) == ["csq", "dhn", "dtsh"]
    assert list(ex.dataset_dropdown.options) == ["fashion-mnist", "fashion-mnist-100"]


def test_legend_sits_beside_the_lengths_panel(explorer):
    fig = explorer.figure()
    ax_len = fig.axes[0]
    fig.canvas.draw()
    legend = ax_len.get_legend().get_window_extent()
    assert legend.x0 >= ax_len.get_window_extent().x1 - 1  # right of the axes: over no point
