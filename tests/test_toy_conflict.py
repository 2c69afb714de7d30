"""The toy conflict of notebook 03: the conflict is there by construction, the weights are the
package's own rule, and the rule turns the shortest code's ascent into descent."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nhl.tutorial import toy_conflict as tc  # noqa: E402
from nhl.weighting import dominance_aware_weights, overlap_inner_products  # noqa: E402

BETAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)


def test_gradients_are_the_pulls_towards_the_targets():
    toy = tc.ToyConflict()
    theta = np.array([0.3, -0.2])
    g = toy.gradients(theta)
    assert np.allclose(g, theta - np.asarray(tc.TARGETS))
    eps = 1e-6  # g_k is the gradient of f_k
    for k in range(3):
        num = [(toy.losses(theta + eps * e)[k] - toy.losses(theta - eps * e)[k]) / (2 * eps) for e in np.eye(2)]
        assert np.allclose(num, g[k], atol=1e-6)
    layer = toy.layer_gradients(theta)
    assert layer.shape == (3, 3, 2) and layer.dtype == torch.float64
    assert torch.equal(layer[:, 1:], torch.zeros(3, 2, 2))


def test_the_long_code_conflicts_with_the_short_one_by_construction():
    toy = tc.ToyConflict()
    c = overlap_inner_products(toy.layer_gradients(toy.start), tc.BITS)
    assert c[0, 2] < -c[0, 0]  # the 3-bit code opposes the 1-bit code more than its own norm
    alphas = toy.alphas(toy.start)
    assert alphas[0, 2] < 1 and alphas[0, 1] == 1  # the rule fires on (1, 3) only


def test_plain_step_raises_the_short_loss_and_the_rule_lowers_it():
    toy = tc.ToyConflict()
    assert toy.slope(toy.start, None) > 0  # plain: ascent for the 1-bit code
    for beta in BETAS:
        assert toy.slope(toy.start, beta) < 0, beta  # with the rule: descent
    plain, rule = toy.path_losses(10, None)[:, 0], toy.path_losses(10, 1.0)[:, 0]
    assert plain[1] > plain[0] and plain[-1] > plain[0]
    assert rule[1] < rule[0] and rule[-1] < rule[0] < plain[-1]


def test_weights_are_the_packages_rule_and_keep_the_guarantee():
    toy = tc.ToyConflict()
    for theta in ([0.0, 0.0], [0.4, 0.3], [-1.0, 0.5]):
        g = toy.layer_gradients(theta)
        for beta in BETAS:
            w = toy.weights(theta, beta)
            assert np.allclose(w, dominance_aware_weights(g, tc.BITS, beta=beta).numpy())
            assert w.sum() == pytest.approx(3)
            a = toy.alphas(theta, beta)
            gv = toy.gradients(theta)
            kept = gv[0] @ (gv[0] + a[0, 1] * gv[1] + a[0, 2] * gv[2])
            assert kept >= (1 - beta) * (gv[0] @ gv[0]) - 1e-12  # docs/method.md §3
    assert np.array_equal(toy.weights(toy.start, None), np.ones(3))


def test_path_recomputes_the_weights_each_step():
    toy = tc.ToyConflict(lr=0.1)
    p = toy.path(3, 1.0)
    assert p.shape == (4, 2) and np.allclose(p[0], tc.START)
    for a, b in zip(p[:-1], p[1:]):
        assert np.allclose(b, a + 0.1 * toy.direction(a, 1.0))


def test_table_and_figure():
    toy = tc.ToyConflict()
    t = toy.table(beta=1.0, steps=5)
    assert list(t.index) == ["plain (all weights 1)", "dominance rule, beta = 1"]
    assert t.iloc[0]["slope of f_1"] > 0 > t.iloc[1]["slope of f_1"]
    assert t.iloc[1]["f_1 after 5 steps"] < t.iloc[0]["f_1 after 5 steps"]
    fig = tc.draw(toy, beta=0.5, steps=4)
    ax, ax2 = fig.axes[:2]
    assert ax.get_xlabel() and ax.get_ylabel() and ax2.get_xlabel() and ax2.get_ylabel()
    assert list(ax2.get_xticks()) == list(range(5))
    again = tc.draw(toy, beta=1.5, steps=4, fig=fig)  # redraw into the same figure
    assert again is fig and len(fig.axes) == 2


def test_slider_redraws_on_change():
    pytest.importorskip("ipywidgets")
    box = tc.beta_slider(tc.ToyConflict(), steps=3)
    slider, out = box.children
    assert slider.value == 1.0 and out.outputs == ()
    slider.value = 0.5  # triggers a redraw (into the output widget)


@pytest.mark.parametrize("bad", [dict(targets=((0, 0), (1, 1))), dict(start=(0, 0, 0)), dict(lr=0)])
def test_bad_settings_are_errors(bad):
    with pytest.raises(ValueError):
        tc.ToyConflict(**bad)
