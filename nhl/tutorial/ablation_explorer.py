"""An interactive explorer of the method's ablation (the committed ``results/frozen-ablation.csv``).

The ablation (docs/method.md §9) trains every base loss four ways: ``plain`` nested training
(uniform weights, no distillation), ``weighting`` only (the dominance-aware dynamic weighting,
docs/method.md §3), ``distill`` only (the long-short cascade self-distillation, docs/method.md
§4) and ``nhl`` (both). The paper's claim is an ordering: the full NHL is at least as good
as without the weighting (``nhl >= distill``), and without the distillation at least as good as
without both (``weighting >= plain``). The committed table is the frozen regime's, every model
trained to convergence (early stopping), with ten seeds on ``fashion-mnist-100`` and five on the
other sets; its CSQ rows on ``fashion-mnist-100`` also hold the public reference code's variants
(:data:`REFERENCE_VARIANTS`), which :func:`load_table` shows as variants of their own.

:class:`AblationExplorer` puts ipywidgets controls (dataset, base method, variants, code length,
metric) over such a table and on every change redraws, as one PNG,

1. the mean over seeds per variant against code length, with the sample standard deviation over
   seeds as error bars and the chosen length highlighted;
2. each variant minus ``plain`` trained with the same seed at the chosen length: mean and 95 %
   confidence interval over seeds (:func:`nhl.studies.statistics.paired`), with a zero line;
3. how often the dominance rule fired (share of training steps with any alpha < 1) for the
   variants that use it (the reference code's variants included), mean and range over seeds;

plus a one-line summary and a note on the regime, seeds and epochs the numbers come from
(:attr:`AblationView.note`). The element with CSS class ``nhl-ablation-values`` (inside the
container of class ``nhl-ablation``) carries ``data-dataset``, ``data-method``, ``data-bits``,
``data-metric``, ``data-variants``, ``data-lengths`` and ``data-values`` (the plotted numbers as
JSON) so a browser test can see the redraw. The constructor renders the initial state, and
:meth:`AblationExplorer.update` returns the numbers shown, so a notebook run headless shows
outputs and code can drive the widget.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..plots.curves import flag_truncated_y
from ..studies import results, statistics

__all__ = [
    "AblationExplorer",
    "AblationView",
    "METRICS",
    "REFERENCE_VARIANTS",
    "REQUIRED_COLUMNS",
    "VARIANT_COLOURS",
    "check_table",
    "label_reference_variants",
    "load_table",
]

#: Columns the explorer needs; ``topk`` and ``mAP@K`` are optional (no cut-off without them).
REQUIRED_COLUMNS = ("dataset", "method", "variant", "seed", "bits", "mAP", "firing")
#: The metrics it can show: tie-aware mAP over the whole database, and at the dataset's cut-off.
METRICS = ("mAP", "mAP@K")
#: The public reference code's variants of the weighting (docs/method.md §10), as rows of an
#: ablation table mark them (column, value), and the variant name :func:`label_reference_variants`
#: gives them: the threshold from the shortest code's gradient norm (``norm="shortest"``) and
#: independent per-length centres (``nested_targets=False``).
REFERENCE_VARIANTS = {
    "shortest-norm": ("norm", "shortest"),
    "independent-centres": ("nested_targets", "False"),
}
#: Variants that use the dominance-aware weighting (docs/method.md §3).
WEIGHTED = ("weighting", "nhl", *REFERENCE_VARIANTS)
#: Display order of the known variants (others follow, sorted).
ORDER = ("single", "plain", "weighting", "distill", "nhl", *REFERENCE_VARIANTS)
#: One colour (and marker) per variant, shared by all three panels.
VARIANT_COLOURS = {
    "single": "#9467bd",
    "plain": "#7f7f7f",
    "weighting": "#1f77b4",
    "distill": "#ff7f0e",
    "nhl": "#2ca02c",
}
_MARKERS = {"single": "v", "plain": "o", "weighting": "s", "distill": "^", "nhl": "D"}
_SPARE_COLOURS = ("#d62728", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
_OFFSET = 0.07  # horizontal offset between variants, in log2 units of code length


def label_reference_variants(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the rows of the reference code's variants (:data:`REFERENCE_VARIANTS`:
    ``norm == "shortest"``, ``nested_targets == False``) renamed to variants of their own
    (``shortest-norm``, ``independent-centres``), so that every (dataset, method, variant, seed,
    bits) has one row. Tables without those columns come back unchanged."""
    out = table
    for name, (column, value) in REFERENCE_VARIANTS.items():
        if column in out:
            marked = out[column].astype(str) == value
            if marked.any():
                out = out.copy() if out is table else out
                out.loc[marked, "variant"] = name
    return out


def load_table(with_single: bool = False, folder: str | Path | None = None,
               name: str = "frozen-ablation") -> pd.DataFrame:
    """A committed ablation table (``results/frozen-ablation.csv`` by default,
    :func:`nhl.studies.results.load`), the reference code's variants labelled as their own
    (:func:`label_reference_variants`).

    ``with_single``: also the single-length baselines of the same regime's study (``frozen`` for
    ``frozen-ablation``; variant ``single``) for the datasets, methods and seeds of the ablation,
    as a further variant.
    """
    table = label_reference_variants(results.load(name, folder))
    if not with_single:
        return table
    study = "frozen" if name == "frozen-ablation" else "seeds"
    other = results.load(study, folder)
    single = other[other["variant"] == "single"]
    keys = ["dataset", "method", "seed"]
    runs = table[keys].drop_duplicates()
    return pd.concat([table, single.merge(runs, on=keys)], ignore_index=True)


def _variant_order(names) -> list[str]:
    names = set(names)
    return [v for v in ORDER if v in names] + sorted(names - set(ORDER))


def _colour(variant: str, order: Sequence[str]) -> str:
    if variant in VARIANT_COLOURS:
        return VARIANT_COLOURS[variant]
    extra = [v for v in order if v not in VARIANT_COLOURS]
    return _SPARE_COLOURS[extra.index(variant) % len(_SPARE_COLOURS)]


def _percent(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    # one decimal near 0 and near 1, where whole percents would read as "never" or "always"
    return f"{100 * x:.1f} %" if 0 < x < 0.01 or 0.99 < x < 1 else f"{100 * x:.0f} %"


def _signed(x: float) -> str:
    return f"{x:+.3f}" if np.isfinite(x) else "n/a"


def _jsonable(x):
    """Floats rounded to 6 digits, NaN -> None (``json`` would write the invalid ``NaN``)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return round(float(x), 6) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # laid out by tight_layout already: one render, not two
    return buf.getvalue()


def check_table(table) -> pd.DataFrame:
    """Validate an ablation table (one row per run and code length); returns it unchanged."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame such as "
                        f"nhl.tutorial.ablation_explorer.load_table(), got {type(table).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the columns {missing}; an ablation table needs "
                         f"{list(REQUIRED_COLUMNS)} (plus topk and mAP@K for a cut-off), as "
                         "nhl.studies.results.load('frozen-ablation') has")
    if table.empty:
        raise ValueError("table has no rows; make the ablation with: python -m nhl study frozen-ablation")
    keys = ["dataset", "method", "variant", "seed", "bits"]
    dup = table.duplicated(keys, keep=False)
    if dup.any():
        example = table.loc[dup, keys].head(3).to_dict("records")
        raise ValueError(f"table has {int(dup.sum())} rows that repeat a (dataset, method, "
                         f"variant, seed, bits) combination, e.g. {example}; keep one row per "
                         "run and length (label_reference_variants names the reference code's "
                         "variants)")
    return table


def _note(rows: pd.DataFrame) -> str:
    """Regime, seeds and epochs of one dataset / method's rows, e.g. ``frozen regime, trained
    to convergence (early stopping: 9-28 of at most 40 epochs); 10 seeds``."""
    seeds = rows.groupby("variant")["seed"].nunique()
    n = (f"{int(seeds.min())} seeds" if seeds.min() == seeds.max()
         else f"{int(seeds.min())}-{int(seeds.max())} seeds (by variant)")
    regime = rows["regime"].dropna().unique() if "regime" in rows else []
    where = f"{', '.join(map(str, regime))} regime" if len(regime) else "scratch regime"
    if "epochs" in rows and len(rows):
        most = int(rows["epochs"].max())
        if "epochs trained" in rows and rows["epochs trained"].notna().any():
            trained = rows["epochs trained"].dropna()
            lo, hi = int(trained.min()), int(trained.max())
            span = f"{lo}" if lo == hi else f"{lo}-{hi}"
            epochs = (f"trained to convergence (early stopping: {span} of at most {most} epochs)"
                      if lo < most or hi < most else f"{most} epochs")
        else:
            epochs = f"{most} epochs"
        return f"{where}, {epochs}; {n}"
    return f"{where}; {n}"


@dataclass(frozen=True)
class AblationView:
    """The numbers one state of the explorer shows (what :meth:`AblationExplorer.update`
    returns).

    ``mean`` / ``sd``: mean and sample standard deviation (``ddof=1``) over seeds of ``metric``,
    index code length, one column per shown variant; ``seeds``: seeds per variant. ``paired``:
    each shown variant (but ``reference``) minus ``reference`` of the same seed at ``bits``,
    summarised over seeds by :func:`nhl.studies.statistics.paired` (columns ``diff``, ``sd``, ``n``,
    ``ci95``, ``sign``).
    ``firing``: share of steps in which the dominance rule fired, ``mean`` / ``min`` / ``max``
    over seeds, for the shown variants that use the weighting. ``note``: the regime, epochs and
    seeds of the shown variants' runs (all the dataset / method's runs when none is shown), e.g.
    "frozen regime, trained to convergence (early stopping: 9-28 of at most 40 epochs); 10 seeds".
    """

    dataset: str
    method: str
    bits: int
    metric: str
    metric_label: str
    reference: str
    variants: tuple[str, ...]
    lengths: tuple[int, ...]
    mean: pd.DataFrame
    sd: pd.DataFrame
    seeds: pd.Series
    paired: pd.DataFrame
    firing: pd.DataFrame
    summary: str
    note: str = ""

    @property
    def at_bits(self) -> pd.DataFrame:
        """Mean, sample std and seeds per shown variant at the chosen length."""
        return pd.DataFrame({"mean": self.mean.loc[self.bits], "sd": self.sd.loc[self.bits],
                             "seeds": self.seeds})

    def values(self) -> dict:
        """The plotted numbers as plain JSON-able data (``data-values`` of the widget)."""
        return _jsonable({
            "lengths": list(self.lengths),
            "mean": {v: self.mean[v].tolist() for v in self.mean.columns},
            "sd": {v: self.sd[v].tolist() for v in self.sd.columns},
            "at": self.mean.loc[self.bits].to_dict(),
            "diff": self.paired["diff"].to_dict(),
            "ci95": self.paired["ci95"].to_dict(),
            "firing": self.firing["mean"].to_dict(),
        })


class AblationExplorer:
    """Widgets over the ablation table: plain / weighting / distill / nhl per dataset and loss.

    ``table``: a long table with one row per run and code length (columns
    :data:`REQUIRED_COLUMNS`, plus ``topk`` and ``mAP@K`` where a dataset has a cut-off), e.g.
    :func:`load_table` (``results/frozen-ablation.csv``), which is read when ``table`` is ``None``. ``dataset``,
    ``method``, ``bits``, ``variants``, ``metric``: the initial controls (default: the first
    dataset and method, the middle length, every variant, ``mAP``). ``reference``: the variant
    the paired differences subtract (``plain``; ``single`` for the ``seeds`` table).
    ``source``: a line under the summary saying where the numbers come from (e.g. the second
    value of :func:`nhl.studies.results.get`); by default, for the committed table, its stamp
    (:func:`nhl.studies.results.describe_source`).

    What it checks is the ablation claim of docs/method.md §9 on the components of sections
    3 (weighting) and 4 (distillation): ``nhl - distill >= 0`` and ``weighting - plain >= 0``,
    with paired differences because runs of one seed share initial weights and batch order.

    ``.widget`` is the ipywidgets box to display; :meth:`update` changes controls and redraws;
    :meth:`figure` and :meth:`snapshot` give a static copy for readers without a kernel.
    """

    def __init__(self, table: pd.DataFrame | None = None, dataset: str | None = None,
                 method: str | None = None, bits: int | None = None,
                 variants: Sequence[str] | None = None, metric: str = "mAP",
                 reference: str = "plain", source: str | None = None):
        import ipywidgets as w

        if table is None:
            table = load_table()
            if source is None:
                try:
                    source = results.describe_source("frozen-ablation")
                except (FileNotFoundError, KeyError, ValueError):  # no or an odd stamp
                    source = None
        self.table = check_table(table)
        self.source = source
        t = self.table
        self.all_variants = tuple(_variant_order(t["variant"].unique()))
        if reference not in self.all_variants:
            raise ValueError(f"reference {reference!r} is not a variant of the table; valid "
                             f"values are: {', '.join(self.all_variants)}")
        self.reference = reference
        self.datasets = tuple(pd.unique(t["dataset"]))
        self._methods = {d: tuple(pd.unique(g)) for d, g in t.groupby("dataset", sort=False)["method"]}
        self._lengths = {k: tuple(sorted(int(b) for b in g.unique()))
                         for k, g in t.groupby(["dataset", "method"], sort=False)["bits"]}
        if {"topk", "mAP@K"} <= set(t.columns):
            cut = t.dropna(subset=["topk", "mAP@K"]).groupby("dataset")["topk"].first()
            self.topk = {d: int(k) for d, k in cut.items()}
        else:
            self.topk = {}
        self._busy = False
        self.last: AblationView | None = None
        self._figure_png: bytes = b""

        dataset = self.datasets[0] if dataset is None else self._check_dataset(dataset)
        method = self._methods[dataset][0] if method is None else self._check_method(dataset, method)
        lengths = self._lengths[dataset, method]
        bits = lengths[len(lengths) // 2] if bits is None else self._check_bits(dataset, method, bits)
        if variants is None:  # the ablation's own variants; the reference code's are toggled on
            variants = tuple(v for v in self.all_variants if v not in REFERENCE_VARIANTS) \
                or self.all_variants
        else:
            variants = self._check_variants(variants)
        metric = self._check_metric(dataset, metric)

        self.dataset_dropdown = w.Dropdown(options=list(self.datasets), value=dataset,
                                           description="dataset", layout=w.Layout(width="320px"))
        self.dataset_dropdown.add_class("nhl-ablation-dataset")
        self.method_dropdown = w.Dropdown(options=list(self._methods[dataset]), value=method,
                                          description="method", layout=w.Layout(width="220px"))
        self.method_dropdown.add_class("nhl-ablation-method")
        self.metric_dropdown = w.Dropdown(options=self._metric_options(dataset), value=metric,
                                          description="metric", layout=w.Layout(width="220px"))
        self.metric_dropdown.add_class("nhl-ablation-metric")
        self.variant_buttons = {}
        for v in self.all_variants:
            b = w.ToggleButton(value=v in variants, description=v, tooltip=f"show {v}",
                               layout=w.Layout(width="auto",
                                               border=f"2px solid {_colour(v, self.all_variants)}"))
            b.add_class(f"nhl-variant-{v}")
            self.variant_buttons[v] = b
        variant_box = w.HBox([w.Label("variants"), *self.variant_buttons.values()])
        variant_box.add_class("nhl-ablation-variants")
        self.bits_slider = w.SelectionSlider(options=list(lengths), value=bits,
                                             description="bits", continuous_update=False,
                                             layout=w.Layout(width="420px"))
        self.bits_slider.add_class("nhl-ablation-bits")
        self.values = w.HTML()
        self.values.add_class("nhl-ablation-summary")
        self.plots = w.Output()
        self.widget = w.VBox([
            w.HBox([self.dataset_dropdown, self.method_dropdown, self.metric_dropdown]),
            variant_box, self.bits_slider, self.values, self.plots,
        ])
        self.widget.add_class("nhl-ablation")

        for control in (self.dataset_dropdown, self.method_dropdown, self.metric_dropdown,
                        self.bits_slider, *self.variant_buttons.values()):
            control.observe(self._on_change, names="value")
        self.refresh()

    # ------------------------------------------------------------------ validation

    def methods(self, dataset: str) -> tuple[str, ...]:
        """Base methods of ``dataset`` in the table."""
        return self._methods[self._check_dataset(dataset)]

    def lengths(self, dataset: str, method: str) -> tuple[int, ...]:
        """Code lengths of ``dataset`` / ``method`` in the table."""
        return self._lengths[self._check_dataset(dataset), self._check_method(dataset, method)]

    def metrics(self, dataset: str) -> tuple[str, ...]:
        """``("mAP",)``, plus ``"mAP@K"`` when ``dataset`` has a cut-off (``topk``)."""
        return METRICS if self._check_dataset(dataset) in self.topk else METRICS[:1]

    def metric_label(self, dataset: str, metric: str) -> str:
        """``mAP``, or ``mAP@1000`` for ``mAP@K`` with the dataset's cut-off."""
        return f"mAP@{self.topk[dataset]}" if metric == "mAP@K" else metric

    def _metric_options(self, dataset: str) -> list[tuple[str, str]]:
        return [(self.metric_label(dataset, m), m) for m in self.metrics(dataset)]

    def _check_dataset(self, dataset) -> str:
        if dataset not in self.datasets:
            raise ValueError(f"unknown dataset {dataset!r}; valid values are: "
                             f"{', '.join(self.datasets)}")
        return dataset

    def _check_method(self, dataset: str, method) -> str:
        if method not in self._methods[dataset]:
            raise ValueError(f"unknown method {method!r} for dataset {dataset!r}; valid values "
                             f"are: {', '.join(self._methods[dataset])}")
        return method

    def _check_bits(self, dataset: str, method: str, bits) -> int:
        lengths = self._lengths[dataset, method]
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits not in lengths:
            raise ValueError(f"unknown code length {bits!r} for {dataset} / {method}; valid "
                             f"values are: {', '.join(map(str, lengths))}")
        return int(bits)

    def _check_variants(self, variants) -> tuple[str, ...]:
        if isinstance(variants, str):
            variants = (variants,)
        variants = list(variants)
        unknown = [v for v in variants if v not in self.all_variants]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; valid values are: "
                             f"{', '.join(self.all_variants)}")
        if not variants:
            raise ValueError(f"variants is empty; choose some of: {', '.join(self.all_variants)}")
        return tuple(v for v in self.all_variants if v in variants)

    def _check_metric(self, dataset: str, metric) -> str:
        valid = self.metrics(dataset)
        if metric not in valid:
            why = "" if metric not in METRICS else f" ({dataset} has no cut-off: topk is empty)"
            raise ValueError(f"unknown metric {metric!r} for dataset {dataset!r}{why}; valid "
                             f"values are: {', '.join(valid)}")
        return metric

    # ------------------------------------------------------------------ controls

    @property
    def selected_variants(self) -> tuple[str, ...]:
        """Variants whose toggle is on, in display order."""
        return tuple(v for v, b in self.variant_buttons.items() if b.value)

    def _on_change(self, change) -> None:
        if self._busy:
            return
        busy, self._busy = self._busy, True
        try:
            if change["owner"] is self.dataset_dropdown:
                self._sync_dataset()
            if change["owner"] in (self.dataset_dropdown, self.method_dropdown):
                self._sync_lengths()
        finally:
            self._busy = busy
        self.refresh()

    def _sync_dataset(self) -> None:
        """Give the method and metric dropdowns the options of the chosen dataset."""
        d = self.dataset_dropdown.value
        methods = list(self._methods[d])
        keep = self.method_dropdown.value if self.method_dropdown.value in methods else methods[0]
        if list(self.method_dropdown.options) != methods:
            self.method_dropdown.options = methods
        self.method_dropdown.value = keep
        metric = self.metric_dropdown.value
        options = self._metric_options(d)
        if list(self.metric_dropdown.options) != options:
            self.metric_dropdown.options = options
        self.metric_dropdown.value = metric if metric in self.metrics(d) else "mAP"

    def _sync_lengths(self) -> None:
        """Give the length slider the lengths of the chosen run, keeping the nearest length."""
        lengths = list(self._lengths[self.dataset_dropdown.value, self.method_dropdown.value])
        current = int(self.bits_slider.value)
        nearest = min(lengths, key=lambda b: (abs(np.log2(b) - np.log2(current)), b))
        if list(self.bits_slider.options) != lengths:
            self.bits_slider.options = lengths
        self.bits_slider.value = nearest

    def update(self, dataset: str | None = None, method: str | None = None,
               bits: int | None = None, variants: Sequence[str] | None = None,
               metric: str | None = None) -> AblationView:
        """Set any of the controls, redraw once and return the numbers shown.

        Everything is checked before anything changes; a bad value raises ``ValueError``
        naming the valid ones (for the dataset and method being set)."""
        d = self.dataset_dropdown.value if dataset is None else self._check_dataset(dataset)
        if method is not None:
            m = self._check_method(d, method)
        else:
            m = self.method_dropdown.value
            m = m if m in self._methods[d] else self._methods[d][0]
        b = None if bits is None else self._check_bits(d, m, bits)
        v = None if variants is None else self._check_variants(variants)
        metric = None if metric is None else self._check_metric(d, metric)
        busy, self._busy = self._busy, True
        try:
            self.dataset_dropdown.value = d
            self._sync_dataset()
            self.method_dropdown.value = m
            self._sync_lengths()
            if b is not None:
                self.bits_slider.value = b
            if v is not None:
                for name, button in self.variant_buttons.items():
                    button.value = name in v
            if metric is not None:
                self.metric_dropdown.value = metric
        finally:
            self._busy = busy
        return self.refresh()

    # ------------------------------------------------------------------ numbers

    def compute(self, dataset: str, method: str, bits: int, variants: Sequence[str],
                metric: str = "mAP") -> AblationView:
        """The numbers for one state (no drawing); arguments as for :meth:`update`, except
        that ``variants`` may be empty (the toggles all off: empty panels)."""
        dataset = self._check_dataset(dataset)
        method = self._check_method(dataset, method)
        bits = self._check_bits(dataset, method, bits)
        metric = self._check_metric(dataset, metric)
        t = self.table
        run = t[(t["dataset"] == dataset) & (t["method"] == method)]
        present = set(run["variant"])
        shown = tuple(v for v in self._check_variants(variants) if v in present) \
            if len(variants) else ()
        rows = run[run["variant"].isin(shown)]
        stats = rows.groupby(["bits", "variant"])[metric].agg(["mean", "std"])
        lengths = self._lengths[dataset, method]
        mean = stats["mean"].unstack("variant").reindex(index=list(lengths), columns=list(shown))
        sd = stats["std"].unstack("variant").reindex(index=list(lengths), columns=list(shown))
        seeds = rows.groupby("variant")["seed"].nunique().reindex(list(shown))
        mean.columns.name = sd.columns.name = None
        mean.index.name = sd.index.name = "bits"

        treated = [v for v in shown if v != self.reference]
        cols = ["diff", "sd", "n", "ci95", "sign"]
        frames = [statistics.paired(run, v, self.reference, value=metric).assign(variant=v)
                  for v in treated if self.reference in present]
        if frames:
            p = pd.concat(frames, ignore_index=True)
            p = p[p["bits"].astype(str) == str(bits)]
            paired = p.set_index("variant")[cols].reindex(treated)
        else:
            paired = pd.DataFrame(index=pd.Index(treated, name="variant"), columns=cols,
                                  dtype=float)
        weighted = [v for v in shown if v in WEIGHTED]
        per_run = run[run["variant"].isin(weighted)].drop_duplicates(["variant", "seed"])
        firing = (per_run.groupby("variant")["firing"].agg(["mean", "min", "max"])
                  .reindex(weighted))
        view = AblationView(dataset, method, bits, metric, self.metric_label(dataset, metric),
                            self.reference, shown, lengths, mean, sd, seeds, paired, firing, "",
                            _note(rows if len(rows) else run))  # of the variants shown
        return replace(view, summary=self._summary_text(view))

    def _headline(self, view: AblationView) -> str | None:
        treated = list(view.paired.index)
        if not treated:
            return None
        return "nhl" if "nhl" in treated else treated[-1]

    def _summary_text(self, view: AblationView) -> str:
        where = f"{view.dataset} / {view.method} at {view.bits} bits"
        if not view.variants:
            return f"{where}: no variant selected"
        head = self._headline(view)
        if head is None:
            return (f"{where}: {view.metric_label} of {', '.join(view.variants)} = "
                    + ", ".join(f"{view.mean.at[view.bits, v]:.3f}" for v in view.variants))
        row = view.paired.loc[head]
        n = int(row["n"]) if np.isfinite(row["n"]) else 0
        if n > 1:
            ci = f"± {row['ci95']:.3f} (95 % CI, {n} seeds)"
        else:
            ci = f"({n} seed{'s' if n != 1 else ''}, no CI)"
        text = f"{where}: {head} - {view.reference} = {_signed(row['diff'])} {ci}"
        if head in view.firing.index and np.isfinite(view.firing.at[head, "mean"]):
            f = view.firing.loc[head]
            text += f"; the rule fired in {_percent(f['mean'])} of steps"
            if f["max"] > f["min"]:
                text += f" ({_percent(f['min'])} to {_percent(f['max'])} over seeds)"
        return text

    # ------------------------------------------------------------------ drawing

    def refresh(self) -> AblationView:
        """Compute with the current control values and redraw every output."""
        view = self.compute(self.dataset_dropdown.value, self.method_dropdown.value,
                            int(self.bits_slider.value), self.selected_variants,
                            self.metric_dropdown.value)
        self.last = view
        fig = self._draw(view)
        self._figure_png = _figure_png(fig)
        self.plots.outputs = ({
            "output_type": "display_data",
            "data": {"image/png": base64.b64encode(self._figure_png).decode("ascii"),
                     "text/plain": f"<ablation of {view.dataset} / {view.method}, "
                                   f"{view.bits} bits>"},
            "metadata": {},
        },)
        self.values.value = self._values_html(view)  # last: changed data-* = whole view redrawn
        return view

    def _values_html(self, view: AblationView) -> str:
        def attr(x) -> str:
            return html.escape(str(x), quote=True)

        rows = []
        for v in view.variants:
            colour = _colour(v, self.all_variants)
            m, s = view.mean.at[view.bits, v], view.sd.at[view.bits, v]
            ms = f"{m:.4f}" + (f" ± {s:.4f}" if np.isfinite(s) else "")
            if v in view.paired.index and np.isfinite(view.paired.at[v, "diff"]):
                p = view.paired.loc[v]
                diff = _signed(p["diff"]) + (f" ± {p['ci95']:.3f}" if np.isfinite(p["ci95"]) else "")
            else:
                diff = "reference" if v == view.reference else "-"
            fire = view.firing.loc[v] if v in view.firing.index else None
            fired = "-" if fire is None else (
                _percent(fire["mean"])
                + (f" ({_percent(fire['min'])}-{_percent(fire['max'])})"
                   if fire["max"] > fire["min"] else ""))
            rows.append(
                f'<tr><td><span style="color:{colour}">&#9632;</span> {html.escape(v)}</td>'
                f"<td>{ms}</td><td>{diff}</td><td>{int(view.seeds[v])}</td><td>{fired}</td></tr>")
        cell = 'style="padding:1px 8px;text-align:right"'
        head = "".join(f"<th {cell}>{h}</th>" for h in (
            "variant", f"{html.escape(view.metric_label)} (mean ± sd)",
            f"- {html.escape(view.reference)} (95 % CI)", "seeds", "rule fired"))
        table = (f'<table style="font-size:12px;border-collapse:collapse">'
                 f"<tr>{head}</tr>{''.join(rows)}</table>") if rows else ""
        note = (f'<div class="nhl-ablation-note" style="font-size:11px;color:#555">'
                f"{html.escape(view.note)}</div>" if view.note else "")
        source = (f'<div style="font-size:11px;color:#555">{html.escape(self.source)}</div>'
                  if self.source else "")
        return (
            f'<div class="nhl-ablation-values" data-dataset="{attr(view.dataset)}" '
            f'data-method="{attr(view.method)}" data-bits="{view.bits}" '
            f'data-metric="{attr(view.metric)}" data-variants="{attr(" ".join(view.variants))}" '
            f'data-lengths="{attr(" ".join(map(str, view.lengths)))}" '
            f'data-values="{attr(json.dumps(view.values(), sort_keys=True))}">'
            f"<b>{html.escape(view.summary)}</b>{note}{table}{source}</div>"
        )

    def _draw(self, view: AblationView, title: str | None = None):
        """The three panels of ``view`` on a new figure (not registered with pyplot, so it is
        never shown twice in a notebook)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(14.5, 4.2 if title is None else 4.6))
        ax_len, ax_diff, ax_fire = fig.subplots(1, 3, gridspec_kw={"width_ratios": [2.3, 1.5, 1.1]})
        self._draw_lengths(view, ax_len)
        self._draw_paired(view, ax_diff)
        self._draw_firing(view, ax_fire)
        if title is not None:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        return fig

    def _draw_lengths(self, view: AblationView, ax) -> None:
        lengths = np.asarray(view.lengths, float)
        ax.axvspan(view.bits * 2 ** -0.4, view.bits * 2 ** 0.4, color="#fde9a9", alpha=0.7,
                   zorder=0, label=f"{view.bits} bits (chosen)")
        n = len(view.variants)
        for i, v in enumerate(view.variants):
            x = lengths * 2 ** ((i - (n - 1) / 2) * _OFFSET)
            ax.errorbar(x, view.mean[v].to_numpy(float), yerr=view.sd[v].fillna(0).to_numpy(float),
                        color=_colour(v, self.all_variants), marker=_MARKERS.get(v, "o"),
                        markersize=5, linewidth=1.4, capsize=3, label=v)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(view.lengths))
        ax.set_xticklabels([str(b) for b in view.lengths])
        ax.minorticks_off()
        for label in ax.get_xticklabels():
            if label.get_text() == str(view.bits):
                label.set_fontweight("bold")
        ax.set_xlabel("code length (bits)")
        ax.set_ylabel(view.metric_label)
        ax.set_title(f"{view.dataset} / {view.method}: {view.metric_label} by code length")
        if view.variants:
            flag_truncated_y(ax)  # a y axis that does not start at 0 says so
        counts = sorted({int(s) for s in view.seeds.dropna()})  # seeds per variant
        over = "-".join(map(str, (counts[0], counts[-1]) if len(counts) > 1 else counts[:1])) or "0"
        if view.variants:  # beside the panel: never over the points
            ax.legend(fontsize=8, title=f"mean ± sample std\nover {over} seeds", title_fontsize=8,
                      loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        else:
            ax.text(0.5, 0.5, "no variant selected", transform=ax.transAxes, ha="center")

    def _draw_paired(self, view: AblationView, ax) -> None:
        p = view.paired
        x = np.arange(len(p))
        for i, v in enumerate(p.index):
            d, ci = p.at[v, "diff"], p.at[v, "ci95"]
            ax.errorbar([i], [d], yerr=[0.0 if not np.isfinite(ci) else ci],
                        color=_colour(v, self.all_variants), marker=_MARKERS.get(v, "o"),
                        markersize=7, capsize=5, linewidth=2)
            if np.isfinite(d):
                ax.annotate(_signed(d), (i, d), textcoords="offset points", xytext=(7, 0),
                            va="center", fontsize=7)
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        lo, hi = ax.get_ylim()  # keep the zero line (what a difference is read against) in view
        pad = 0.05 * (hi - lo)
        ax.set_ylim(min(lo, -pad), max(hi, pad))
        ax.set_xticks(x)
        ax.set_xticklabels(list(p.index), rotation=25, ha="right", rotation_mode="anchor")
        ax.set_xlim(-0.6, max(len(p), 1) - 0.4)
        ax.set_xlabel("variant")
        ax.set_ylabel(f"{view.metric_label} - {view.reference} (same seed)")
        n = p["n"].dropna()
        seeds = f"{int(n.max())} seeds" if len(n) else "seeds"
        ax.set_title(f"{view.bits} bits: paired difference\nmean and 95 % CI over {seeds}")
        if not len(p):
            ax.text(0.5, 0.5, f"select a variant besides {view.reference}",
                    transform=ax.transAxes, ha="center", fontsize=9)

    def _draw_firing(self, view: AblationView, ax) -> None:
        f = view.firing
        x = np.arange(len(f))
        mean, lo, hi = (100 * f[c].to_numpy(float) for c in ("mean", "min", "max"))
        ax.bar(x, mean, yerr=np.vstack([mean - lo, hi - mean]), capsize=5, width=0.6,
               color=[_colour(v, self.all_variants) for v in f.index])
        for i, (m, top) in enumerate(zip(mean, hi)):
            if np.isfinite(m):
                ax.annotate(_percent(m / 100), (i, top), textcoords="offset points",
                            xytext=(0, 3), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x)
        ax.set_xticklabels(list(f.index), rotation=25, ha="right", rotation_mode="anchor")
        ax.set_xlim(-0.6, max(len(f), 1) - 0.4)
        top = np.nanmax(hi) if len(f) and np.isfinite(hi).any() else 0.0
        ax.set_ylim(0, max(5.0, 1.2 * top))
        ax.set_xlabel("variant")
        ax.set_ylabel("steps where the rule fired (%)")
        ax.set_title("dominance rule firing\nmean, range over seeds")
        if not len(f):
            ax.text(0.5, 0.5, "no shown variant\nuses the weighting", transform=ax.transAxes,
                    ha="center", va="center", fontsize=9)

    def figure(self):
        """A new matplotlib figure of the current state (the three panels, summary as title)."""
        return self._draw(self.last, title=self.last.summary)

    def snapshot(self):
        """A static copy of the current view (summary, table, plots) as IPython HTML, for
        notebooks read without a live kernel (widgets need one to show their outputs)."""
        from IPython.display import HTML

        png = base64.b64encode(self._figure_png).decode("ascii")
        body = self.values.value.replace('class="nhl-ablation-values"',
                                         'class="nhl-ablation-snapshot"', 1)
        return HTML(f'{body}<img src="data:image/png;base64,{png}" '
                    f'alt="ablation of {html.escape(self.last.dataset)} / '
                    f'{html.escape(self.last.method)}">')
