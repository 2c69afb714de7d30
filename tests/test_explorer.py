"""The explorer on a tiny hand-made run: searches, redraws and controls (no browser needed)."""

import base64
import re
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from nhl.tutorial.explorer import Explorer, Retrieved, pick_query  # noqa: E402

N_DB = 20


def _codes() -> np.ndarray:
    """Database codes built so 4-bit and 16-bit rankings disagree (query = all +1).

    items 0-4:  first 4 bits agree, last 12 all differ -> d4 = 0, d16 = 12
    items 5-9:  one of the first 4 bits differs, rest agree -> d4 = 1, d16 = 1
    items 10-19: two of the first 4 differ, 6 of the rest differ -> d4 = 2, d16 = 8
    """
    db = np.ones((N_DB, 16), np.int8)
    db[0:5, 4:] = -1
    db[5:10, 0] = -1
    db[10:, :2] = -1
    db[10:, 4:10] = -1
    return db


class _FakeImages:
    def __init__(self, n: int, offset: int):
        self.n, self.offset = n, offset

    def __len__(self):
        return self.n

    def images_for_display(self, positions):
        pos = np.asarray(positions).reshape(-1)
        img = np.zeros((len(pos), 6, 6, 1), np.uint8)
        img[...] = ((pos + self.offset) * 10 % 256).astype(np.uint8)[:, None, None, None]
        return img


def _run(flip: bool = False):
    db = _codes()
    labels = np.zeros((N_DB, 2), np.uint8)
    labels[5:10, 0] = 1  # the 16-bit neighbours share the query's class 0
    labels[np.r_[0:5, 10:N_DB], 1] = 1
    q = np.ones((2, 16), np.int8)
    q[1] = -q[1] if flip else q[1]
    ql = np.array([[1, 0], [0, 1]], np.uint8)
    codes = {"query": q, "database": db, "query_labels": ql, "database_labels": labels}
    return SimpleNamespace(codes=codes, bit_list=(4, 16))


@pytest.fixture
def splits():
    return SimpleNamespace(query=_FakeImages(2, 100), database=_FakeImages(N_DB, 0),
                           class_names=["zero", "one"])


def _ids(explorer: Explorer) -> list[int]:
    m = re.search(r'data-ids="([^"]*)"', explorer.grid.value)
    return [int(x) for x in m.group(1).split()]


def test_initial_state_is_rendered(splits):
    ex = Explorer({"fake": _run()}, splits, k=5, bits=4)
    assert isinstance(ex.last, Retrieved)
    assert sorted(_ids(ex)) == [0, 1, 2, 3, 4]  # d4 = 0
    assert ex.grid.value.count("<img") == 1 + 5  # query + top-k, as data URIs
    assert ex.grid.value.count('src="data:image/png;base64,') == 6
    assert ex.grid.value.count("#d62728") == 5  # all wrong (class one) -> red frames
    assert "query 0" in ex.summary.value and "precision@5 = <b>0.00</b>" in ex.summary.value
    (out,) = ex.plots.outputs
    png = base64.b64decode(out["data"]["image/png"])
    assert png.startswith(b"\x89PNG")
    assert list(ex.bits_slider.options) == [4, 16]


def test_longer_code_changes_the_retrieved_images(splits):
    ex = Explorer({"fake": _run()}, splits, k=5, bits=4)
    before = _ids(ex)
    res = ex.update(bits=16)
    assert sorted(_ids(ex)) == [5, 6, 7, 8, 9] != sorted(before)
    assert res.distances.tolist() == [1] * 5
    assert res.relevant.all() and res.precision == 1.0
    assert ex.grid.value.count("#2ca02c") == 5
    assert 'data-bits="16"' in ex.grid.value
    # moving the slider itself (what a browser does) triggers the same redraw
    ex.bits_slider.value = 4
    assert sorted(_ids(ex)) == [0, 1, 2, 3, 4]
    assert ex.last.bits == 4


def test_funnel_with_a_tiny_shortlist_misses_what_exhaustive_finds(splits):
    # 4-bit shortlist of 5 keeps items 0-4 only; re-ranking at 16 bits cannot recover 5-9.
    ex = Explorer({"fake": _run()}, splits, k=5, bits=16, shortlist=(5,))
    assert ex.funnel_plan(16, (4, 16)) == ((4, 16), (5,))
    exhaustive = sorted(_ids(ex))
    res = ex.update(funnel=True)
    assert res.funnel and sorted(res.ids.tolist()) == [0, 1, 2, 3, 4] != exhaustive
    assert res.distances.tolist() == [12] * 5
    assert "funnel 4&rarr;16" in ex.summary.value
    # a shortlist that holds both groups finds the exhaustive answer
    ex2 = Explorer({"fake": _run()}, splits, k=5, bits=16, shortlist=(10,), funnel=True)
    assert sorted(_ids(ex2)) == exhaustive


def test_query_method_and_random_controls(splits):
    runs = {"a": _run(), "b": _run(flip=True)}
    ex = Explorer(runs, splits, k=3, bits=16)
    assert ex.method_dropdown.options == ("a", "b")
    ex.update(query=1)
    assert ex.last.query == 1 and 'data-query="1"' in ex.grid.value
    ids_a = _ids(ex)
    ex.method_dropdown.value = "b"  # query 1 of run b is all -1: farthest items first
    assert ex.last.method == "b" and _ids(ex) != ids_a
    ex._on_random()
    assert ex.last.query == ex.query_slider.value


def test_errors_name_the_argument(splits):
    with pytest.raises(ValueError, match="runs is empty"):
        Explorer({}, splits)
    with pytest.raises(ValueError, match="bits must be one of"):
        Explorer({"fake": _run()}, splits, bits=8)
    with pytest.raises(ValueError, match="query must be an integer"):
        Explorer({"fake": _run()}, splits).update(query=7)
    bad = SimpleNamespace(query=_FakeImages(2, 0), database=_FakeImages(N_DB + 1, 0),
                          class_names=[])
    with pytest.raises(ValueError, match="pass the splits the run was trained on"):
        Explorer({"fake": _run()}, bad)


def test_snapshot_is_static_html(splits):
    ex = Explorer({"fake": _run()}, splits, k=2, bits=16)
    html = ex.snapshot().data
    assert 'data-ids="' in html and html.count("data:image/png;base64,") == 2 + 1 + 1


# --------------------------------------------------------------------------- many queries at once


def test_length_table_and_pick_query(splits):
    ex = Explorer({"fake": _run()}, splits, k=5, bits=4)
    table = ex.length_table()
    assert list(table.index) == [0, 1]
    assert list(table.columns) == ["class", "P@5 4", "P@5 16", "changed 4>16", "changes",
                                   "overlap shortest-longest"]
    assert table.loc[0, "class"] == "zero"
    # query 0: 4 bits -> items 0-4 (class one, wrong), 16 bits -> items 5-9 (class zero, right)
    assert table.loc[0, "P@5 4"] == 0.0 and table.loc[0, "P@5 16"] == 1.0
    assert table.loc[0, "changes"] == 1 and table.loc[0, "overlap shortest-longest"] == 0.0
    assert bool(table.loc[0, "changed 4>16"])
    assert pick_query(table) == 0
    assert ex.last.query == 0 and ex.last.bits == 4  # computing the table does not redraw
    # only query 1 given: it qualifies or is the best available
    assert pick_query(ex.length_table(queries=[1])) == 1
    with pytest.raises(ValueError, match="queries must be"):
        ex.length_table(queries=[2])
    with pytest.raises(ValueError, match="length_table"):
        pick_query(table.drop(columns="changes"))


def test_pick_query_prefers_changes_at_every_step_then_gain():
    table = pd.DataFrame({"P@3 8": [0.0, 0.5, 0.3, 0.0], "P@3 16": [0.3, 0.5, 0.6, 0.6],
                          "P@3 32": [0.3, 1.0, 0.3, 1.0], "changes": [1, 2, 2, 2]},
                         index=[10, 11, 12, 13])
    assert pick_query(table) == 11  # first with 2 changes and a gain
    table.loc[11, "P@3 32"] = 0.4  # now a loss; 12 has no gain either: 13 is next
    assert pick_query(table) == 13
    table["changes"] = [1, 1, 1, 1]  # nobody qualifies: most changes, largest gain, lowest index
    assert pick_query(table) == 13


def test_funnel_agreement(splits):
    ex = Explorer({"fake": _run()}, splits, k=5, bits=16, shortlist=(5,))
    agree = ex.funnel_agreement()
    # query 0: the 4-bit shortlist of 5 misses the true 16-bit neighbours (items 5-9)
    assert agree.loc[0, "overlap"] == 0.0 and agree.loc[0, "recall"] == 0.0
    assert agree.loc[0, "P@5 exhaustive"] == 1.0 and agree.loc[0, "P@5 funnel"] == 0.0
    wide = Explorer({"fake": _run()}, splits, k=5, bits=16, shortlist=(20,)).funnel_agreement()
    assert (wide["overlap"] == 1.0).all() and (wide["recall"] == 1.0).all()
    shortest = ex.funnel_agreement(bits=4)  # no shorter length: the funnel is the exhaustive search
    assert (shortest["recall"] == 1.0).all()
    with pytest.raises(ValueError, match="bits must be one of"):
        ex.funnel_agreement(bits=8)
    with pytest.raises(ValueError, match="not one of the runs"):
        ex.funnel_agreement(method="nope")


def test_codes_are_read_only_when_shown(splits):
    class Counting(SimpleNamespace):
        reads = 0

        @property
        def codes(self):
            type(self).reads += 1
            return _run().codes

    runs = {"a": Counting(bit_list=(4, 16)), "b": Counting(bit_list=(4, 16))}
    ex = Explorer(runs, splits, k=3, bits=16)
    assert Counting.reads == 1  # only the shown run
    ex.update(method="b")
    assert Counting.reads == 2 and len(ex.codes) == 2 and list(ex.codes) == ["a", "b"]


def test_grid_captions_show_class_names(splits):
    ex = Explorer({"fake": _run()}, splits, k=5, bits=16)
    assert ex.grid.value.count(">zero</span>") == 5  # items 5-9 are class zero


def _fake_cache(tmp_path, monkeypatch, main, runs):
    """A run cache under ``tmp_path`` holding ``runs`` ({folder tail: (config, metrics)}) as
    config.json + metrics.json; ``experiments.run`` returns ``main`` (and its baselines),
    ``experiments.load`` a stand-in of the folder. Returns the list of configs ``run`` got."""
    import json

    from nhl import experiments

    loaded = {}
    for tail, (config, metrics) in runs.items():
        folder = tmp_path / config.dataset / config.method / f"{config.kind}-seed0-{tail}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(config.to_json())
        (folder / "metrics.json").write_text(json.dumps(metrics))
        loaded[folder] = SimpleNamespace(config=config, path=folder, metrics=metrics)
    trained = []

    def run(config, **_):
        trained.append(config.kind)
        if config == main.config:
            return main
        return SimpleNamespace(config=config, path=tmp_path / "trained" / config.kind,
                               metrics={"split_fingerprint": "fp"})

    monkeypatch.setattr(experiments, "run", run)
    monkeypatch.setattr(experiments, "load", lambda path: loaded[Path(path)])
    return trained


def test_run_label_and_available_runs(monkeypatch, tmp_path):
    from nhl.config import TrainConfig
    from nhl.tutorial.explorer import available_runs, run_label

    base = TrainConfig(method="dhn", epochs=3)
    splits = SimpleNamespace(fingerprint="fp")
    fp = {"split_fingerprint": "fp"}
    main = SimpleNamespace(config=base, path=tmp_path / base.dataset / "dhn" / "nested-nhl-seed0-main",
                           metrics=fp)
    _fake_cache(tmp_path, monkeypatch, main, {
        "main": (base, fp),
        "nested-plain": (base.variant("plain"), fp),
        "lr-search": (base.replace(lr=0.01), fp),
        "single": (base.baseline(8), fp),
        "other-epochs": (base.replace(epochs=5), fp),
        "other-split": (base.variant("distill"), {"split_fingerprint": "xx"}),
        "csq": (base.replace(method="csq"), fp),
        "other-data": (base.replace(dataset="fashion-mnist-100"), fp),
    })
    runs = available_runs(base, splits, root=tmp_path)
    assert list(runs) == ["dhn nested-nhl seed 0, 3 ep", "csq nested-nhl seed 0, 3 ep",
                          "dhn nested-plain seed 0, 3 ep"]
    assert runs["dhn nested-nhl seed 0, 3 ep"] is main
    everything = available_runs(base, splits, root=tmp_path, recipe_only=False, same_epochs=False)
    assert "dhn nested-nhl seed 0, 3 ep, lr 0.01" in everything
    assert "dhn nested-nhl seed 0, 5 ep" in everything
    assert not any("single" in name for name in everything)
    lr_run = next(r for r in everything.values() if r.config.lr == 0.01)
    assert run_label(lr_run) == "dhn nested-nhl seed 0, 3 ep, lr 0.01"


def test_available_runs_adds_the_single_length_baselines_and_skips_old_versions(monkeypatch,
                                                                                tmp_path):
    from nhl import experiments
    from nhl.config import TrainConfig
    from nhl.tutorial.explorer import available_runs

    base = TrainConfig(method="dhn", epochs=3, bit_list=(8, 16, 32))
    splits = SimpleNamespace(fingerprint="fp")
    now = {"split_fingerprint": "fp", "version": experiments.package_version()}
    main = SimpleNamespace(config=base, path=tmp_path / "main", metrics=now)
    trained = _fake_cache(tmp_path, monkeypatch, main, {
        "0a1b2c": (base, {**now, "version": "0.0.1"}),  # the same config, older code
        "plain": (base.variant("plain"), now),
    })
    (tmp_path / base.dataset / "dhn" / "nested-distill-seed0-broken").mkdir()
    (tmp_path / base.dataset / "dhn" / "nested-distill-seed0-broken" / "metrics.json").write_text("{")

    runs = available_runs(base, splits, root=tmp_path, baselines=True)
    assert list(runs) == ["dhn nested-nhl seed 0, 3 ep", "dhn single-8 seed 0, 3 ep",
                          "dhn single-16 seed 0, 3 ep", "dhn single-32 seed 0, 3 ep",
                          "dhn nested-plain seed 0, 3 ep"]  # the 0.0.1 run is not offered
    assert trained == ["nested-nhl", "single-8", "single-16", "single-32"]
    assert [r.config.bit_list for r in list(runs.values())[1:4]] == [(8,), (16,), (32,)]
    trained.clear()
    default = available_runs(base, splits, root=tmp_path)
    assert trained == ["nested-nhl"] and not any("single" in name for name in default)
    everything = available_runs(base, splits, root=tmp_path, current_only=False)
    assert "dhn nested-nhl seed 0, 3 ep [0a1b2c]" in everything  # the folder's tail


def test_precision_by_length_and_a_single_length_run(splits):
    nested = _run()
    single = SimpleNamespace(codes={**nested.codes, "query": nested.codes["query"][:, :4],
                                    "database": nested.codes["database"][:, :4]},
                             bit_list=(4,))
    ex = Explorer({"nested": nested, "single": single}, splits, k=5, bits=16)
    p = ex.precision_by_length("nested")
    assert list(p.index) == [4, 16] and p.index.name == "bits" and p.name == "mean P@5"
    table = ex.length_table("nested")
    assert p.tolist() == pytest.approx([table["P@5 4"].mean(), table["P@5 16"].mean()])
    # query 0 (class zero): at 4 bits the top 5 are items 0-4 (class one), at 16 bits items 5-9
    assert ex.precision_by_length("nested", queries=[0]).tolist() == [0.0, 1.0]
    res = ex.update(method="single")  # the length slider follows the run's one length
    assert res.bits == 4 and tuple(ex.bits_slider.options) == (4,)
    assert ex.precision_by_length("single").tolist() == pytest.approx([p[4]])
    assert ex.length_table("single")["changes"].eq(0).all()
    with pytest.raises(ValueError, match="method"):
        ex.precision_by_length("missing")


def test_length_table_over_all_queries_is_computed_once_per_run(splits, monkeypatch):
    ex = Explorer({"fake": _run()}, splits, k=5, bits=4)
    first = ex.length_table()
    first.loc[0, "changes"] = 99  # a copy: changing it does not change the explorer's table
    calls = []
    index = ex.codes["fake"].index
    monkeypatch.setattr(ex.codes["fake"], "index", lambda bits=None: calls.append(bits) or index(bits))
    again = ex.length_table()
    assert calls == [] and again.loc[0, "changes"] != 99
    pd.testing.assert_frame_equal(again, ex.length_table())
    ex.length_table(queries=[1])  # a subset is computed, not cached
    assert calls == [4, 16]
    assert ex.precision_by_length().tolist() == pytest.approx(again.filter(like="P@").mean().tolist())
