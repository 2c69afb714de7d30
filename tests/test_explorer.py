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


def test_run_label_and_available_runs(monkeypatch, tmp_path):
    from nhl import experiments
    from nhl.config import TrainConfig
    from nhl.tutorial.explorer import available_runs, run_label

    base = TrainConfig(method="dhn", epochs=3)
    splits = SimpleNamespace(fingerprint="fp")

    def fake(config, name, fingerprint="fp"):
        return SimpleNamespace(config=config, path=tmp_path / name,
                               metrics={"split_fingerprint": fingerprint})

    main = fake(base, "main")
    others = {
        "nested-plain": fake(base.variant("plain"), "nested-plain"),
        "lr-search": fake(base.replace(lr=0.01), "lr-search"),
        "single": fake(base.baseline(8), "single"),
        "other-epochs": fake(base.replace(epochs=5), "other-epochs"),
        "other-split": fake(base.variant("distill"), "other-split", fingerprint="xx"),
        "csq": fake(base.replace(method="csq"), "csq"),
    }
    monkeypatch.setattr(experiments, "run", lambda *a, **k: main)
    monkeypatch.setattr(experiments, "list_runs", lambda root=None: pd.DataFrame(
        {"path": [str(main.path)] + [str(r.path) for r in others.values()]}))
    monkeypatch.setattr(experiments, "load", lambda path: others[Path(path).name])
    runs = available_runs(base, splits)
    assert list(runs) == ["dhn nested-nhl seed 0, 3 ep", "csq nested-nhl seed 0, 3 ep",
                          "dhn nested-plain seed 0, 3 ep"]
    assert runs["dhn nested-nhl seed 0, 3 ep"] is main
    everything = available_runs(base, splits, recipe_only=False, same_epochs=False)
    assert "dhn nested-nhl seed 0, 3 ep, lr 0.01" in everything
    assert "dhn nested-nhl seed 0, 5 ep" in everything
    assert not any("single" in name for name in everything)
    assert run_label(others["lr-search"]) == "dhn nested-nhl seed 0, 3 ep, lr 0.01"
