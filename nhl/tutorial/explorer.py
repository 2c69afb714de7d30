"""An interactive retrieval explorer for trained nested models (tutorial notebook 09).

:class:`Explorer` puts ipywidgets controls over one or more finished runs: a query picker (slider
and a "random query" button), a code-length slider over the run's ``bit_list``, a method
dropdown and a toggle between exhaustive Hamming search and the coarse-to-fine funnel. Every
change re-runs the search on the stored codes (a ``b``-bit code is the prefix of the longest
code, docs/method.md §1) and redraws

* the top-k database images, framed green (relevant: shares a label) or red, in an
  ``ipywidgets.HTML`` whose ``data-ids`` attribute lists the retrieved database positions (so
  a browser test can see that the result changed);
* the query's Hamming-distance histogram, relevant against irrelevant items, and the
  precision-recall curve by Hamming radius at that length (docs/method.md §7), as a PNG in
  an ``ipywidgets.Output``.

Everything also works without a browser: the constructor renders the initial state and
:meth:`Explorer.update` returns the search result, so a notebook run headless shows outputs.
Over many queries at once: :meth:`Explorer.length_table` (how each query's top-k changes with
the length; :func:`pick_query` picks a query where every length step changes it),
:meth:`Explorer.precision_by_length` (mean precision@k per length, e.g. a nested run's prefixes
against single-length models: :func:`available_runs` with ``baselines=True``) and
:meth:`Explorer.funnel_agreement` (funnel against exhaustive search, tie-aware). A run's codes
are read only when the explorer first shows or measures it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..validation import check_codes, check_labels, check_positive_int

__all__ = ["Explorer", "Retrieved", "available_runs", "pick_query", "run_label"]


@dataclass(frozen=True)
class Retrieved:
    """One search of the explorer: what was asked and what came back."""

    method: str
    bits: int
    query: int
    funnel: bool
    ids: np.ndarray  # (k,) database positions, best first
    distances: np.ndarray  # (k,) Hamming distances at ``bits`` bits
    relevant: np.ndarray  # (k,) bool: shares a label with the query
    seconds: float  # search time of this one query

    @property
    def precision(self) -> float:
        """Share of relevant items among the retrieved ones (precision@k)."""
        return float(self.relevant.mean()) if self.relevant.size else 0.0


def run_label(run) -> str:
    """A short name for a run in the method dropdown, e.g. ``dhn nested-nhl seed 0, 15 ep``;
    a learning rate set by hand (not the method's recorded one) is added: ``..., lr 0.01``."""
    c = run.config
    label = f"{c.method} {c.kind} seed {c.seed}, {c.epochs} ep"
    if getattr(c, "lr", None) is not None:
        label += f", lr {c.lr:g}"
    return label


def available_runs(config, splits=None, root: str | Path | None = None,
                   progress: bool = False, recipe_only: bool = True,
                   same_epochs: bool = True, baselines: bool = False,
                   current_only: bool = True) -> dict[str, object]:
    """``config``'s run (trained or loaded from the cache) plus every finished nested run
    on the same data split, as ``{label: RunResult}`` for :class:`Explorer`.

    Other runs qualify when they are nested (``kind`` starts with ``nested``), use the same
    dataset, protocol and split seed, and their stored split fingerprint matches ``splits``
    (so their codes are in the order of ``splits.query`` / ``splits.database``). By default
    only runs with the method's recorded learning rate (``recipe_only``: not the runs of a
    learning-rate search), ``config``'s number of epochs (``same_epochs``) and stored by this
    package version (``current_only``: a run of an older version is one that
    :func:`nhl.experiments.run` would no longer return) are added.

    ``baselines``: also ``config``'s single-length models, one per length
    (:meth:`nhl.config.TrainConfig.baseline`: same data, method, epochs and seed), loaded from
    the cache or trained here if missing (notebook 07 trains them); they come right after the
    main run, shortest first. The main run comes first, the other nested runs last, sorted by
    label; their codes are read only when the explorer shows them.
    """
    from .. import experiments

    splits = splits if splits is not None else experiments.get_splits(config)
    main = experiments.run(config, root=root, progress=progress)
    singles = {}
    if baselines:
        for bits in config.bit_list:
            r = experiments.run(config.baseline(bits), root=root, progress=progress)
            singles[run_label(r)] = r
    version = experiments.package_version()
    others = {}
    for path, c, metrics in _nested_run_folders(config.dataset, root):
        if path == Path(main.path):
            continue
        if not (c.dataset == config.dataset and c.protocol == config.protocol
                and c.split_seed == config.split_seed
                and metrics.get("split_fingerprint") == splits.fingerprint):
            continue
        if current_only and metrics.get("version", version) != version:
            continue
        if recipe_only and (c.lr is not None or c.hyper):
            continue
        if same_epochs and c.epochs != config.epochs:
            continue
        try:
            r = experiments.load(path)  # reads and checks every file: only for the runs kept
        except experiments.DamagedRunError as err:
            warnings.warn(f"{err}; skipped", stacklevel=2)
            continue
        label = run_label(r)
        if label in others or label == run_label(main):
            label = f"{label} [{path.name[-6:]}]"
        others[label] = r
    return {run_label(main): main, **singles, **dict(sorted(others.items()))}


def _nested_run_folders(dataset: str, root: str | Path | None = None):
    """``(folder, config, metrics)`` of every finished nested run of ``dataset`` in the run
    cache, from its ``config.json`` and ``metrics.json`` only (reading a whole run, as
    :func:`nhl.experiments.load` does, is kept for the runs :func:`available_runs` offers;
    the cache holds hundreds). Folders whose two files do not parse are left out."""
    from ..config import TrainConfig
    from ..utils import runs_dir

    base = (Path(root) if root is not None else runs_dir()) / dataset
    for metrics_file in sorted(base.glob("*/nested-*/metrics.json")):
        folder = metrics_file.parent
        try:
            config = TrainConfig.from_dict(json.loads((folder / "config.json").read_text()))
            metrics = json.loads(metrics_file.read_text())
        except (OSError, ValueError, TypeError):
            continue  # a damaged folder: nhl.experiments.list_runs names it
        if config.kind.startswith("nested") and isinstance(metrics, dict):
            yield folder, config, metrics


def _png_data_uri(image: np.ndarray) -> str:
    """``uint8`` (H, W, C) image -> ``data:image/png;base64,...``."""
    from PIL import Image

    img = image[..., 0] if image.shape[-1] == 1 else image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _bytes(bits: int) -> str:
    n = -(-bits // 8)
    return f"{n} byte" if n == 1 else f"{n} bytes"


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def pick_query(table: pd.DataFrame) -> int:
    """A query whose top-k differs between lengths, from :meth:`Explorer.length_table`.

    The first query (lowest position) whose retrieved set changes at every step between
    adjacent lengths and whose precision@k is higher at the longest length than at the
    shortest; if none qualifies, the one with the most changes, then the largest precision
    gain, then the lowest position.
    """
    p_cols = [c for c in table.columns if str(c).startswith("P@")]
    if "changes" not in table.columns or len(p_cols) < 2 or table.empty:
        raise ValueError("table must come from Explorer.length_table (P@k columns, changes)")
    gain = table[p_cols[-1]] - table[p_cols[0]]
    ok = (table["changes"] == len(p_cols) - 1) & (gain > 0)
    if ok.any():
        return int(table.index[ok.to_numpy()][0])
    order = pd.DataFrame({"changes": table["changes"].to_numpy(), "gain": gain.to_numpy(),
                          "query": table.index.to_numpy()})
    order = order.sort_values(["changes", "gain", "query"], ascending=[False, False, True])
    return int(order["query"].iloc[0])


class _Codes:
    """The codes and labels of one run, checked against the splits, with cached indexes."""

    def __init__(self, name: str, run, n_query: int, n_database: int):
        codes = run.codes
        self.query = check_codes(codes["query"], f"runs[{name!r}].codes['query']")
        self.database = check_codes(codes["database"], f"runs[{name!r}].codes['database']")
        self.query_labels = check_labels(codes["query_labels"], "query_labels",
                                         n_items=len(self.query))
        self.database_labels = check_labels(codes["database_labels"], "database_labels",
                                            n_items=len(self.database))
        if len(self.query) != n_query or len(self.database) != n_database:
            raise ValueError(
                f"run {name!r} has codes for {len(self.query)} queries and {len(self.database)} "
                f"database items but the splits have {n_query} and {n_database}; pass the "
                "splits the run was trained on (nhl.experiments.get_splits(run.config))"
            )
        self.bit_list = tuple(int(b) for b in run.bit_list)
        if self.bit_list[-1] > self.query.shape[1]:
            raise ValueError(f"run {name!r} lists {self.bit_list[-1]} bits but its codes have "
                             f"{self.query.shape[1]}")
        self._indexes: dict = {}
        self._pr: dict = {}

    def index(self, bits: int | None = None):
        """The Hamming index of the database at ``bits`` (``None``: all stored bits)."""
        from ..retrieval import HammingIndex

        key = bits or self.database.shape[1]
        if key not in self._indexes:
            # numpy: one query at a time is its strength; faiss's thread pool costs more than
            # the scan for a single query (tens of ms on a busy machine)
            self._indexes[key] = HammingIndex(self.database[:, :key], backend="numpy")
        return self._indexes[key]

    def relevant_to(self, query: int) -> np.ndarray:
        """(N_db,) bool: database items sharing a label with ``query``."""
        q_labels = self.query_labels[query].astype(np.int32)
        return (self.database_labels.astype(np.int32) @ q_labels) > 0

    def pr_curve(self, bits: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean precision and recall by Hamming radius over all queries (cached per length)."""
        from ..metrics import precision_recall_by_radius

        if bits not in self._pr:
            self._pr[bits] = precision_recall_by_radius(
                self.query[:, :bits], self.database[:, :bits], self.query_labels,
                self.database_labels)
        return self._pr[bits]


class _LazyCodes(Mapping):
    """``{label: _Codes}`` that reads and checks a run's codes on first access."""

    def __init__(self, runs: Mapping, n_query: int, n_database: int):
        self._runs, self._n = runs, (n_query, n_database)
        self._loaded: dict[str, _Codes] = {}

    def __getitem__(self, name: str) -> _Codes:
        if name not in self._loaded:
            self._loaded[name] = _Codes(name, self._runs[name], *self._n)
        return self._loaded[name]

    def __iter__(self):
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)


class Explorer:
    """Widgets to browse the retrieval results of nested hash codes, one query at a time.

    ``runs``: ``{label: run}`` (e.g. from :func:`available_runs`) or a sequence of runs
    (labelled by :func:`run_label`); a run is anything with ``.codes`` (``query``,
    ``database``, ``query_labels``, ``database_labels`` as stored by
    :func:`nhl.experiments.run`) and ``.bit_list``. ``splits``: the data split whose
    ``query`` / ``database`` images the codes belong to (``.images_for_display``,
    ``class_names``). ``k``: images shown; ``shortlist``: candidates kept per funnel stage
    (default :func:`nhl.retrieval.default_shortlist`).

    ``.widget`` is the ipywidgets box to display; :meth:`update` changes controls and redraws.
    """

    def __init__(self, runs, splits, k: int = 12, query: int = 0, bits: int | None = None,
                 method: str | None = None, funnel: bool = False,
                 shortlist: Sequence[int] | None = None, seed: int = 0, thumb_px: int = 56):
        import ipywidgets as w

        if not isinstance(runs, Mapping):
            runs = {run_label(r): r for r in runs}
        if not runs:
            raise ValueError("runs is empty: pass at least one finished run, e.g. "
                             "{'nested': nhl.experiments.run(config)}")
        self.splits = splits
        self.k = check_positive_int(k, "k")
        self.thumb_px = check_positive_int(thumb_px, "thumb_px")
        self.shortlist = None if shortlist is None else tuple(
            check_positive_int(s, "shortlist") for s in shortlist)
        n_q, n_db = len(splits.query), len(splits.database)
        self.runs = dict(runs)
        self.codes = _LazyCodes(self.runs, n_q, n_db)  # a run's codes are read when first shown
        self._rng = np.random.default_rng(seed)
        self._busy = False
        self.last: Retrieved | None = None
        self._figure_png: bytes = b""
        self._length_tables: dict[str, pd.DataFrame] = {}  # over all queries, per run

        names = list(self.runs)
        method = names[0] if method is None else method
        if method not in self.runs:
            raise ValueError(f"method {method!r} is not one of the runs: {names}")
        bit_list = self.codes[method].bit_list
        bits = bit_list[len(bit_list) // 2] if bits is None else bits
        if bits not in bit_list:
            raise ValueError(f"bits must be one of {bit_list}, got {bits!r}")

        self.method_dropdown = w.Dropdown(options=names, value=method, description="method",
                                          layout=w.Layout(width="420px"))
        self.funnel_box = w.Checkbox(value=bool(funnel), description="coarse-to-fine funnel",
                                     indent=False)
        self.query_slider = w.IntSlider(value=0, min=0, max=n_q - 1, description="query",
                                        continuous_update=False, layout=w.Layout(width="420px"))
        self.query_slider.value = self._check_query(query)
        self.random_button = w.Button(description="random query", icon="random")
        self.bits_slider = w.SelectionSlider(options=list(bit_list), value=bits,
                                             description="bits", continuous_update=False,
                                             layout=w.Layout(width="420px"))
        self.bits_slider.add_class("nhl-bits")
        self.summary = w.HTML()
        self.grid = w.HTML()
        self.grid.add_class("nhl-grid")
        self.plots = w.Output()
        self.widget = w.VBox([
            w.HBox([self.method_dropdown, self.funnel_box]),
            w.HBox([self.query_slider, self.random_button]),
            self.bits_slider, self.summary, self.grid, self.plots,
        ])
        self.widget.add_class("nhl-explorer")

        for control in (self.method_dropdown, self.funnel_box, self.query_slider,
                        self.bits_slider):
            control.observe(self._on_change, names="value")
        self.random_button.on_click(self._on_random)
        self.refresh()

    # ------------------------------------------------------------------ controls

    def _check_query(self, query) -> int:
        n_q = len(self.splits.query)
        if isinstance(query, bool) or not isinstance(query, (int, np.integer)) \
                or not 0 <= query < n_q:
            raise ValueError(f"query must be an integer in 0..{n_q - 1}, got {query!r}")
        return int(query)

    def _on_change(self, change) -> None:
        if change["owner"] is self.method_dropdown:
            self._sync_bits()
        if not self._busy:
            self.refresh()

    def _on_random(self, _button=None) -> None:
        self.query_slider.value = int(self._rng.integers(len(self.splits.query)))

    def _sync_bits(self) -> None:
        """Give the length slider the bit list of the chosen run, keeping the nearest length."""
        bit_list = list(self.codes[self.method_dropdown.value].bit_list)
        if list(self.bits_slider.options) == bit_list:
            return
        current = self.bits_slider.value
        nearest = min(bit_list, key=lambda b: (abs(np.log2(b) - np.log2(current)), b))
        busy, self._busy = self._busy, True
        try:
            self.bits_slider.options = bit_list
            self.bits_slider.value = nearest
        finally:
            self._busy = busy

    def update(self, query: int | None = None, bits: int | None = None,
               method: str | None = None, funnel: bool | None = None) -> Retrieved:
        """Set any of the controls, run the search once and redraw; returns the result."""
        busy, self._busy = self._busy, True
        try:
            if method is not None:
                if method not in self.runs:
                    raise ValueError(f"method {method!r} is not one of the runs: {list(self.runs)}")
                self.method_dropdown.value = method
                self._sync_bits()
            if bits is not None:
                if bits not in self.bits_slider.options:
                    raise ValueError(f"bits must be one of {tuple(self.bits_slider.options)}, "
                                     f"got {bits!r}")
                self.bits_slider.value = bits
            if query is not None:
                self.query_slider.value = self._check_query(query)
            if funnel is not None:
                self.funnel_box.value = bool(funnel)
        finally:
            self._busy = busy
        return self.refresh()

    # ------------------------------------------------------------------ search + drawing

    def funnel_plan(self, bits: int, bit_list: Sequence[int]) -> tuple[tuple[int, ...],
                                                                          tuple[int, ...]]:
        """Stages and shortlist sizes of the funnel ending at ``bits``: the shortest length
        shortlists, the middle one (if any) narrows, ``bits`` re-ranks."""
        shorter = [b for b in bit_list if b < bits]
        if not shorter:
            return (bits,), ()
        stages = (shorter[0], bits) if len(shorter) == 1 else (shorter[0], shorter[-1], bits)
        n_db = len(self.splits.database)
        if self.shortlist is not None:
            sizes = tuple(self.shortlist[: len(stages) - 1])
            sizes = sizes + (sizes[-1],) * (len(stages) - 1 - len(sizes))
        else:
            from ..retrieval import default_shortlist

            sizes = default_shortlist(self.k, stages, n_db)
        sizes = tuple(min(max(s, self.k), n_db) for s in sizes)
        return stages, sizes

    def search(self, method: str, bits: int, query: int, funnel: bool) -> Retrieved:
        """Top-k database items for one query, exhaustive or through the funnel."""
        codes = self.codes[method]
        q = codes.query[query : query + 1]
        k = min(self.k, len(codes.database))
        stages, sizes = self.funnel_plan(bits, codes.bit_list)
        use_funnel = funnel and len(stages) > 1
        index = codes.index() if use_funnel else codes.index(bits)  # built once, not timed
        t0 = time.perf_counter()
        if use_funnel:
            from ..retrieval import funnel_search

            dist, idx = funnel_search(index, q, k, stages=stages, shortlist=sizes)
        else:
            dist, idx = index.search(q[:, :bits], k)
        seconds = time.perf_counter() - t0
        ids = np.asarray(idx).reshape(-1)[:k].astype(np.int64)
        return Retrieved(method, bits, query, bool(funnel), ids,
                         np.asarray(dist).reshape(-1)[:k].astype(np.int64),
                         codes.relevant_to(query)[ids], seconds)

    # ------------------------------------------------------------------ many queries at once

    def _method(self, method: str | None) -> str:
        method = self.method_dropdown.value if method is None else method
        if method not in self.runs:
            raise ValueError(f"method {method!r} is not one of the runs: {list(self.runs)}")
        return method

    def _queries(self, queries) -> np.ndarray:
        if queries is None:
            return np.arange(len(self.splits.query))
        qs = np.asarray(queries).reshape(-1)
        if qs.size == 0 or not np.issubdtype(qs.dtype, np.integer) or qs.min() < 0 \
                or qs.max() >= len(self.splits.query):
            raise ValueError(f"queries must be query positions in 0..{len(self.splits.query) - 1}")
        return qs.astype(np.int64)

    def length_table(self, method: str | None = None, queries=None) -> pd.DataFrame:
        """How each query's top-k changes with the code length (exhaustive search).

        One row per query (index ``query``): ``class``, ``P@k <b>`` (precision@k at each
        length ``b``), ``changed <a>><b>`` (whether the set of retrieved items differs between
        adjacent lengths ``a`` and ``b``), ``changes`` (how many of those steps change it; the
        maximum is ``len(bit_list) - 1``) and ``overlap shortest-longest`` (share of the top-k
        retrieved at both the shortest and the longest length). The table over all queries
        is computed once per run (the codes do not change) and returned as a copy.
        """
        method = self._method(method)
        if queries is None and method in self._length_tables:
            return self._length_tables[method].copy()
        codes, qs = self.codes[method], self._queries(queries)
        k = min(self.k, len(codes.database))
        ids = {}
        relevant = (codes.query_labels[qs].astype(np.int32)
                    @ codes.database_labels.T.astype(np.int32)) > 0
        table = pd.DataFrame({"query": qs, "class": [self._class_name(codes.query_labels[q])
                                                     for q in qs]})
        for b in codes.bit_list:
            ids[b] = codes.index(b).search(codes.query[qs, :b], k)[1]
            table[f"P@{k} {b}"] = np.take_along_axis(relevant, ids[b], axis=1).mean(axis=1)
        sets = [np.sort(ids[b], axis=1) for b in codes.bit_list]
        for (a, b), sa, sb in zip(zip(codes.bit_list[:-1], codes.bit_list[1:]), sets[:-1],
                                  sets[1:]):
            table[f"changed {a}>{b}"] = (sa != sb).any(axis=1)
        table["changes"] = table.filter(like="changed ").sum(axis=1)
        first, last = ids[codes.bit_list[0]], ids[codes.bit_list[-1]]
        table["overlap shortest-longest"] = (
            (first[:, :, None] == last[:, None, :]).any(axis=2).sum(axis=1) / k)
        table = table.set_index("query")
        if queries is None:
            self._length_tables[method] = table.copy()
        return table

    def precision_by_length(self, method: str | None = None, queries=None) -> pd.Series:
        """Mean precision@k over ``queries`` (default: all) at each of the run's lengths
        (exhaustive search): a Series indexed by ``bits``, the means of
        :meth:`length_table`'s ``P@k`` columns. A single-length run has one entry."""
        method = self._method(method)
        table = self.length_table(method, queries)
        means = table.filter(like="P@").mean()
        return pd.Series(means.to_numpy(), index=pd.Index(self.codes[method].bit_list,
                                                          name="bits"),
                         name=f"mean P@{min(self.k, len(self.codes[method].database))}")

    def funnel_agreement(self, bits: int | None = None, method: str | None = None,
                         queries=None) -> pd.DataFrame:
        """Funnel against exhaustive search at ``bits`` (default: the longest), per query.

        The funnel is the one the explorer uses (:meth:`funnel_plan`). One row per query:
        ``overlap`` (share of the exhaustive top-k ids the funnel also returns), ``recall``
        (tie-aware: items tied with the exhaustive k-th distance count as equally right, see
        :func:`nhl.retrieval.tie_aware_recall`), ``P@k exhaustive`` and ``P@k funnel``.
        """
        from ..retrieval import funnel_search, tie_aware_recall

        method = self._method(method)
        codes, qs = self.codes[method], self._queries(queries)
        bits = codes.bit_list[-1] if bits is None else bits
        if bits not in codes.bit_list:
            raise ValueError(f"bits must be one of {codes.bit_list}, got {bits!r}")
        k = min(self.k, len(codes.database))
        stages, sizes = self.funnel_plan(bits, codes.bit_list)
        q = codes.query[qs]
        exact_d, exact_i = codes.index(bits).search(q[:, :bits], k)
        if len(stages) > 1:
            index = codes.index()
            found_d, found_i = funnel_search(index, q, k, stages=stages, shortlist=sizes)
        else:
            found_d, found_i = exact_d, exact_i
        relevant = (codes.query_labels[qs].astype(np.int32)
                    @ codes.database_labels.T.astype(np.int32)) > 0
        return pd.DataFrame({
            "query": qs,
            "overlap": (found_i[:, :, None] == exact_i[:, None, :]).any(axis=2).sum(axis=1) / k,
            "recall": tie_aware_recall(found_d, exact_d),
            f"P@{k} exhaustive": np.take_along_axis(relevant, exact_i, axis=1).mean(axis=1),
            f"P@{k} funnel": np.take_along_axis(relevant, found_i, axis=1).mean(axis=1),
        }).set_index("query")

    def refresh(self) -> Retrieved:
        """Search with the current control values and redraw every output."""
        method, bits = self.method_dropdown.value, int(self.bits_slider.value)
        query, funnel = int(self.query_slider.value), bool(self.funnel_box.value)
        res = self.search(method, bits, query, funnel)
        self.last = res
        grid, summary = self._grid_html(res), self._summary_html(res)
        self._figure_png = self._draw_plots(res)
        self.plots.outputs = ({
            "output_type": "display_data",
            "data": {"image/png": base64.b64encode(self._figure_png).decode("ascii"),
                     "text/plain": f"<distance histogram and PR curve, {bits} bits>"},
            "metadata": {},
        },)
        self.summary.value = summary
        self.grid.value = grid  # last: a changed data-ids means the whole view is redrawn
        return res

    def _class_name(self, labels: np.ndarray) -> str:
        names = getattr(self.splits, "class_names", None) or []
        idx = np.flatnonzero(labels)
        return ", ".join(names[i] if i < len(names) else str(i) for i in idx) or "no label"

    def _summary_html(self, res: Retrieved) -> str:
        codes = self.codes[res.method]
        how = "funnel " + "&rarr;".join(map(str, self.funnel_plan(res.bits, codes.bit_list)[0])) \
            if res.funnel else "exhaustive"
        stored = codes.database.shape[1]
        name = html.escape(self._class_name(codes.query_labels[res.query]))
        return (
            f"<b>query {res.query}</b> ({name})"
            f" &middot; {res.bits} bits ({_bytes(res.bits)} per image, prefix of the "
            f"stored {stored}-bit code) &middot; {how} search in {1e3 * res.seconds:.2f} ms "
            f"&middot; precision@{res.ids.size} = <b>{res.precision:.2f}</b>"
        )

    def _grid_html(self, res: Retrieved) -> str:
        codes = self.codes[res.method]
        px = self.thumb_px
        style = f"width:{px}px;height:{px}px;image-rendering:pixelated;border:3px solid {{}};"
        q_img = self.splits.query.images_for_display([res.query])[0]
        db_imgs = self.splits.database.images_for_display(res.ids) if res.ids.size else []
        q_name = html.escape(self._class_name(codes.query_labels[res.query]))
        cells = [
            f'<figure style="margin:0 10px 0 0;text-align:center">'
            f'<img src="{_png_data_uri(q_img)}" alt="query" title="query {res.query}: {q_name}" '
            f'style="{style.format("#1f77b4")}"><figcaption style="font-size:11px">query<br>'
            f"{q_name}</figcaption></figure>"
        ]
        for rank, (i, d, ok, img) in enumerate(
                zip(res.ids, res.distances, res.relevant, db_imgs), start=1):
            name = html.escape(self._class_name(codes.database_labels[i]))
            colour, mark = ("#2ca02c", "&#10003;") if ok else ("#d62728", "&#10007;")
            cells.append(
                f'<figure style="margin:0;text-align:center" data-id="{int(i)}">'
                f'<img src="{_png_data_uri(img)}" alt="database item {int(i)}" '
                f'title="#{rank}: database item {int(i)}, {name}, distance {int(d)}" '
                f'style="{style.format(colour)}"><figcaption style="font-size:11px;'
                f'max-width:{px + 12}px;overflow:hidden;white-space:nowrap">'
                f"{mark} #{rank} d={int(d)}<br><span style=\"font-size:9px\">{name}</span>"
                "</figcaption></figure>"
            )
        ids = " ".join(str(int(i)) for i in res.ids)
        return (
            f'<div class="nhl-topk" data-ids="{ids}" data-bits="{res.bits}" '
            f'data-query="{res.query}" data-funnel="{int(res.funnel)}" '
            f'style="display:flex;flex-wrap:wrap;gap:4px;align-items:flex-start">'
            + "".join(cells) + "</div>"
        )

    def _draw_plots(self, res: Retrieved) -> bytes:
        import matplotlib.pyplot as plt

        from ..metrics import hamming_distances
        from ..plots.search import plot_distance_histogram, plot_pr_curve

        codes = self.codes[res.method]
        b = res.bits
        dist = hamming_distances(codes.query[res.query : res.query + 1, :b],
                                 codes.database[:, :b])[0]
        relevant = codes.relevant_to(res.query)
        fig, (ax_h, ax_pr) = plt.subplots(1, 2, figsize=(10, 3.4))
        try:
            plot_distance_histogram(dist, relevant, b, ax=ax_h, normalize=True)
            ax_h.set_title(f"Query {res.query}: Hamming distances at {b} bits")
            precision, recall = codes.pr_curve(b)
            plot_pr_curve(precision, recall, ax=ax_pr, label="mean over all queries")
            hits = np.cumsum(np.bincount(dist[relevant], minlength=b + 1))
            found = np.cumsum(np.bincount(dist, minlength=b + 1))
            q_prec = np.divide(hits, found, out=np.zeros(b + 1), where=found > 0)
            q_rec = hits / max(int(relevant.sum()), 1)
            plot_pr_curve(q_prec, q_rec, ax=ax_pr, label=f"query {res.query}", linestyle="--")
            ax_pr.set_title(f"Precision-recall by Hamming radius, {b} bits")
            fig.tight_layout()
            return _figure_png(fig)
        finally:
            plt.close(fig)

    def snapshot(self):
        """A static copy of the current view (summary, images, plots) as IPython HTML, for
        notebooks read without a live kernel (widgets need one to show their outputs)."""
        from IPython.display import HTML

        png = base64.b64encode(self._figure_png).decode("ascii")
        plots = f'<img src="data:image/png;base64,{png}" alt="distance histogram and PR curve">'
        return HTML(f"<div>{self.summary.value}</div>{self.grid.value}{plots}")
