"""Per-method recipes: one table, used by default, overridable, part of the cache key."""

import pytest

from nhl import experiments, losses, recipes
from nhl.config import TrainConfig
from nhl.studies import results


def test_every_method_has_a_recipe_with_sources():
    assert sorted(recipes.RECIPES) == losses.available()
    table = recipes.table()
    assert set(table.source) <= set(recipes.SOURCES)
    assert set(table.method) == set(losses.available())
    for method in losses.available():
        r = recipes.recipe(method)
        assert r.lr > 0 and r.source("lr") in recipes.SOURCES
        # every recorded hyper-parameter is one the loss accepts
        assert set(r.hyper_dict) <= set(losses.LOSSES[method].defaults)


@pytest.mark.parametrize("method", ["csq", "dhn", "dtsh"])
def test_config_uses_the_recipe_by_default(method):
    config = TrainConfig(method=method)
    assert config.lr is None and config.learning_rate == recipes.recipe(method).lr
    assert config.loss_hyper == recipes.recipe(method).hyper_dict


def test_changing_the_method_changes_the_recipe_and_overrides_win():
    dhn = TrainConfig(method="csq").replace(method="dhn")
    assert dhn.learning_rate == recipes.recipe("dhn").lr
    own = TrainConfig(method="dhn", lr=5e-4, hyper={"alpha": 0.5})
    assert own.learning_rate == 5e-4 and own.loss_hyper["alpha"] == 0.5
    assert TrainConfig(method="DSH").method == "dsh"
    with pytest.raises(ValueError, match="method"):
        TrainConfig(method="nope")
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)


def test_recipe_values_reach_the_cache_key(monkeypatch):
    config = TrainConfig(method="dhn")
    before = experiments.run_key(config, "split", "1.0")
    changed = recipes.Recipe("dhn", 0.123, (("alpha", 0.1),), (("lr", "validation search"), ("alpha", "reference code")))
    monkeypatch.setitem(recipes.RECIPES, "dhn", changed)
    assert config.learning_rate == 0.123
    assert experiments.run_key(config, "split", "1.0") != before


def test_recipe_needs_a_source_for_every_value():
    with pytest.raises(ValueError, match="no source"):
        recipes.Recipe("x", 1e-3, (("m", 1.0),), (("lr", "paper"),))
    with pytest.raises(ValueError, match="source"):
        recipes.Recipe("x", 1e-3, (), (("lr", "a blog"),))


def test_recorded_learning_rates_are_the_committed_search_winners():
    table = results.load("hparams")
    per_run = table.drop_duplicates(["method", "lr"])
    assert sorted(per_run["lr"].unique()) == sorted(recipes.SEARCH["learning rates"])
    best = per_run.loc[per_run.groupby("method")["val score"].idxmax()].set_index("method")["lr"]
    for method, lr in best.items():
        assert recipes.recipe(method).lr == pytest.approx(lr), method
        assert recipes.recipe(method).source("lr") == recipes.SEARCHED
