import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nhl import NestedObjective
from nhl.diagnostics import (
    GradientRecorder,
    backbone_gradients,
    choose_conflicts,
    conflict_cases,
    conflict_rates,
    describe_conflict,
    dominance_margins,
    flat_cosines,
    last_linear,
    layer_gradients,
    mean_matrices,
    overlap_pair,
    pair_norms,
    pair_plane,
    pick_conflict,
    project_pair,
    to_matrices,
    update_shares,
    weighting_steps,
)
from nhl.distill import cascade_loss
from nhl.models import HashModel
from nhl.objective import ObjectiveOutput
from nhl.weighting import dominance_alphas, dominance_aware_weights

BITS = (2, 4, 8)


class Backbone(nn.Module):
    """Linear -> BatchNorm -> ReLU -> Linear: two linear layers, a buffer to protect."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 6))
        self.out_features = 6

    def forward(self, x):
        return self.net(x)


class Target(nn.Module):
    """(tanh u - t)^2 with a per-length target; the long codes' targets oppose the short one's."""

    def __init__(self, target, scale):
        super().__init__()
        self.register_buffer("target", target)
        self.scale = scale

    def forward(self, u, y, idx):
        return self.scale * (torch.tanh(u) - self.target).pow(2).mean()


def _tiny(distill=0.5):
    torch.manual_seed(0)
    model = HashModel(Backbone(), BITS)
    with torch.no_grad():
        model.hash_layer.weight.normal_(0, 0.5)
    losses = [Target(torch.ones(b) * (-1) ** k, 3.0**k) for k, b in enumerate(BITS)]
    obj = NestedObjective(model.hash_layer, losses, weighting="uniform", distill=distill)
    x, y, idx = torch.randn(6, 5), torch.zeros(6, 2), torch.arange(6)
    return model, obj, x, y, idx


def _manual(model, obj, x, y, idx, weight, detach_features):
    """Reference: backpropagate each length's objective separately and read weight.grad."""
    out = []
    for k in range(len(BITS)):
        model.zero_grad()
        z = model.features(x)
        outs = model.hash_layer(z.detach() if detach_features else z)
        term = obj.losses[k](outs[k], y, idx) + obj.distill * cascade_loss(outs)[k]
        term.backward()
        out.append(weight.grad.clone())
    return torch.stack(out)


def test_layer_gradients_equal_manual_autograd_of_each_objective():
    model, obj, x, y, idx = _tiny()
    g = layer_gradients(model, obj, x, y, idx)
    assert g.shape == (3, 8, 6)
    expected = _manual(model, obj, x, y, idx, model.hash_layer.weight, detach_features=True)
    assert torch.allclose(g, expected, atol=1e-6)
    assert torch.all(g[0, 2:] == 0) and torch.all(g[1, 4:] == 0)  # rows beyond L_k are zero
    # the weights the objective would compute from these gradients agree with nhl.weighting
    obj.weighting = "dominance"
    out = obj(model.features(x).detach(), y, idx)
    assert torch.allclose(out.weights, dominance_aware_weights(g, BITS), atol=1e-6)


def test_backbone_gradients_shape_cosines_and_no_side_effects():
    model, obj, x, y, idx = _tiny()
    assert last_linear(model.backbone) is model.backbone.net[3]
    stats = model.backbone.net[1].running_mean.clone()
    g, cos = backbone_gradients(model, obj, x, y, idx)
    assert g.shape == (3, 6, 7) and cos.shape == (3, 3)
    assert torch.equal(model.backbone.net[1].running_mean, stats)  # buffers restored
    expected = _manual(model, obj, x, y, idx, model.backbone.net[3].weight, detach_features=False)
    assert torch.allclose(g, expected, atol=1e-6)
    assert torch.allclose(cos, flat_cosines(expected), atol=1e-6)
    assert torch.allclose(torch.diagonal(cos), torch.ones(3))
    g0, _ = backbone_gradients(model, obj, x, y, idx, layer=model.backbone.net[0])
    assert g0.shape == (3, 7, 5)
    with pytest.raises(ValueError, match="layer="):
        last_linear(nn.Sequential(nn.ReLU()))


def test_flat_cosines_by_hand():
    g = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]], [[-3.0, 0.0]]])
    cos = flat_cosines(g)
    assert torch.allclose(cos, torch.tensor([[1.0, 0, -1], [0, 1, 0], [-1, 0, 1]]))


def test_weighting_steps_reproduce_the_package_weights_and_hand_values():
    g = torch.zeros(3, 8, 1, dtype=torch.float64)
    g[0, :2, 0] = torch.tensor([1.0, 0.0])
    g[1, :4, 0] = torch.tensor([-3.0, 0.0, 0.0, 0.0])
    s = weighting_steps(g, BITS)
    assert s.c.loc[2, 4] == -3 and s.tau.loc[2] == pytest.approx(0.5)
    assert bool(s.conflict.loc[2, 4]) and not s.conflict.loc[2, 8]
    assert s.alpha_uncapped.loc[2, 8] == 1.0 and s.alpha.loc[2, 8] == pytest.approx(0.5 / 3)
    assert torch.allclose(s.tensor(), dominance_aware_weights(g, BITS))
    torch.manual_seed(1)
    for norm in ("own", "shortest"):
        for beta in (0.0, 0.3, 1.0):
            r = torch.randn(3, 8, 4, dtype=torch.float64)
            r[0, 2:], r[1, 4:] = 0, 0
            expected = dominance_aware_weights(r, BITS, beta=beta, norm=norm)
            assert torch.allclose(weighting_steps(r, BITS, beta, norm).tensor(), expected)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 1.0))
def test_dominance_margins_respect_the_floor(seed, beta):
    torch.manual_seed(seed)
    g = torch.randn(3, 8, 2, dtype=torch.float64) * torch.tensor([1.0, 4.0, 9.0]).view(3, 1, 1)
    g[0, 2:], g[1, 4:] = 0, 0
    m = dominance_margins(g, BITS, dominance_alphas(g, BITS, beta=beta))
    assert torch.all(m >= 1 - beta - 1e-9)
    assert m[-1] == pytest.approx(1.0)


def test_dominance_margins_unadjusted_by_hand():
    g = torch.zeros(3, 8, 1, dtype=torch.float64)
    g[0, :2, 0] = torch.tensor([1.0, 1.0])
    g[1, :4, 0] = torch.tensor([-2.0, 0.0, 1.0, 0.0])
    g[2, :, 0] = 1.0
    # i=2 bits: (2 + (-2) + 2) / 2 = 1; i=4 bits: (5 + (-2 + 1)) / 5 = 0.8
    assert torch.allclose(dominance_margins(g, BITS), torch.tensor([1.0, 0.8, 1.0], dtype=torch.float64))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=6, max_size=6))
def test_project_pair_preserves_norms_and_angle(vals):
    a, b = np.array(vals[:3]), np.array(vals[3:])
    if np.linalg.norm(a) < 1e-3:
        a = a + 1.0
    p = project_pair(a, b)
    assert p[0, 1] == 0 and p[0, 0] > 0 and p[1, 1] >= 0
    assert np.linalg.norm(p[0]) == pytest.approx(np.linalg.norm(a), rel=1e-9)
    assert np.linalg.norm(p[1]) == pytest.approx(np.linalg.norm(b), rel=1e-9, abs=1e-9)
    assert p[0] @ p[1] == pytest.approx(a @ b, rel=1e-7, abs=1e-7)


def test_project_pair_by_hand_and_zero_vector():
    p = project_pair(torch.tensor([0.0, 3.0, 0.0]), torch.tensor([1.0, -2.0, 0.0]))
    assert np.allclose(p, [[3, 0], [-2, 1]])
    with pytest.raises(ValueError, match="g_i is zero"):
        project_pair(np.zeros(3), np.ones(3))


def test_overlap_pair_takes_the_short_codes_rows():
    g = torch.arange(3 * 8 * 2, dtype=torch.float64).reshape(3, 8, 2)
    gi, gj = overlap_pair(g, BITS, 4, 8)
    assert torch.equal(gi, g[1, :4].reshape(-1)) and torch.equal(gj, g[2, :4].reshape(-1))
    with pytest.raises(ValueError, match="short < long"):
        overlap_pair(g, BITS, 8, 4)


def _output(grads, weights=None, K=3):
    return ObjectiveOutput(
        total=torch.zeros(()), losses=torch.arange(K, dtype=torch.float32),
        distill=torch.zeros(K), weights=torch.ones(K) if weights is None else weights, grads=grads,
    )


def test_recorder_rows_every_n_steps_and_conflicts():
    rec = GradientRecorder(BITS, every=2, keep_grads=True)
    calm = torch.zeros(3, 8, 1)
    calm[0, :2], calm[1, :4], calm[2] = 1.0, 1.0, 1.0
    fight = calm.clone()
    fight[1, :2] = -3.0  # c_(2,4) = -6 < -tau = -1
    for step, g in enumerate([calm, calm, fight, calm, calm]):
        rec(0, step, _output(g), model=None)
    f = rec.frame()
    assert list(f["iteration"]) == [0, 2, 4] and list(f["epoch"]) == [0, 0, 0]
    assert list(f["anti_domination"]) == [False, True, False]
    assert f.loc[1, "alpha_2_4"] == pytest.approx(1 / 6)
    assert f.loc[1, "cos_2_4"] == pytest.approx(-1.0)  # rows 1..2: (1, 1) against (-3, -3)
    assert f.loc[1, "cos_4_8"] == pytest.approx(-4 / (2 * np.sqrt(20)))  # (-3,-3,1,1).(1,1,1,1)
    assert f.loc[0, "weight_4"] == 1.0 and f.loc[1, "rule_weight_4"] < 1
    assert f.loc[0, "loss_8"] == 2.0
    assert rec.strongest["iteration"] == 2 and torch.equal(rec.strongest["grads"], fight)
    assert list(rec.kept) == [2] and torch.equal(rec.kept[2], fight)
    assert f.loc[1, "c_2_4"] == pytest.approx(-6.0) and f.loc[1, "ovnorm_2_4"] == pytest.approx(np.sqrt(18))
    assert f.loc[1, "ovnorm_4_8"] == pytest.approx(2.0)
    gi, gj = overlap_pair(fight, BITS, 2, 4)
    assert np.allclose(pair_plane(f.loc[1], 2, 4), project_pair(gi, gj))
    assert pick_conflict(f) == (1, 2, 4)
    assert pick_conflict(f.iloc[[0, 2]]) is None  # the rule never fired there
    rates = conflict_rates(f)
    row = rates[(rates["short"] == 2) & (rates["long"] == 4)].iloc[0]
    assert row["negative cosine"] == pytest.approx(1 / 3) and row["alpha < 1"] == pytest.approx(1 / 3)
    mats, bits = to_matrices(f)
    assert bits == BITS and mats.shape == (3, 3, 3)
    assert mats[1, 1, 0] == mats[1, 0, 1] == f.loc[1, "cos_2_4"]


def test_recorder_needs_gradients_and_records_backbone_cosines():
    rec = GradientRecorder(BITS)
    with pytest.raises(ValueError, match="track_gradients=True"):
        rec(0, 0, _output(None), model=None)
    with pytest.raises(ValueError, match="probe"):
        GradientRecorder(BITS, probe=(1, 2, 3))
    model, obj, x, y, idx = _tiny()
    rec = GradientRecorder(BITS, every=1, probe=(x, y, idx), objective=obj)
    rec(0, 0, _output(layer_gradients(model, obj, x, y, idx)), model)
    f = rec.frame()
    _, cos = backbone_gradients(model, obj, x, y, idx)
    assert f.loc[0, "bb_cos_2_8"] == pytest.approx(float(cos[0, 2]), abs=1e-6)
    assert set(conflict_rates(f, "bb_cos").columns) == {"short", "long", "mean cosine", "negative cosine"}


def test_conflict_rates_needs_recorder_columns():
    with pytest.raises(ValueError, match="GradientRecorder"):
        conflict_rates(pd.DataFrame({"x": [1]}))


def _capped_grads():
    """2-bit code opposed by the 4-bit one (alpha 1/6) but not by the 8-bit one: the cap acts."""
    g = torch.zeros(3, 8, 1, dtype=torch.float64)
    g[0, :2, 0] = torch.tensor([1.0, 0.0])
    g[1, :4, 0] = torch.tensor([-3.0, 0.0, 0.0, 0.0])
    g[2, :, 0] = 0.1
    return g


def test_weighting_steps_pairs_table_marks_crossings_and_the_cap():
    t = weighting_steps(_capped_grads(), BITS).pairs()
    assert list(zip(t["short"], t["long"])) == [(2, 4), (2, 8), (4, 8)]
    first, second, third = t.iloc[0], t.iloc[1], t.iloc[2]
    assert first["c_ij"] == -3 and first["tau_i"] == pytest.approx(0.5)
    assert first["opposed"] and first["crossed"] and not first["cap changed it"]
    assert first["alpha"] == pytest.approx(1 / 6) == first["alpha after cap"]
    assert not second["opposed"] and not second["crossed"] and second["cap changed it"]
    assert second["alpha"] == 1.0 and second["alpha after cap"] == pytest.approx(1 / 6)
    assert third["opposed"] and not third["crossed"]  # c = -0.3, tau = 9 / 2


def test_update_shares_by_hand_and_bad_weights():
    g = _capped_grads()
    # plain: i=2 bits: (1 - 3 + 0.1) / 1; i=4 bits: (-3 + 9 + (-0.3)) / 9; i=8 bits: (0.1 - 0.3 + 0.08) / 0.08
    expected = torch.tensor([-1.9, 5.7 / 9, -0.12 / 0.08], dtype=torch.float64)
    assert torch.allclose(update_shares(g, BITS), expected)
    w = torch.tensor([2.0, 0.5, 1.0])
    assert update_shares(g, BITS, w)[0] == pytest.approx(2 - 1.5 + 0.1)
    with pytest.raises(ValueError, match="3 numbers"):
        update_shares(g, BITS, [1.0, 1.0])


def test_pair_norms_parallel_gradients_give_cosine_one_and_the_length_ratio():
    torch.manual_seed(0)
    base = torch.randn(8, 3, dtype=torch.float64)
    g = torch.zeros(3, 8, 3, dtype=torch.float64)
    for k, b in enumerate(BITS):  # a mean over bits of one per-bit term: g_k = base / L_k on its rows
        g[k, :b] = base[:b] / b
    t = pair_norms(g, BITS)
    assert np.allclose(t["cosine"], 1.0) and np.allclose(t["norm ratio"], t["L_i / L_j"])
    assert list(t["L_i / L_j"]) == [0.5, 0.25, 0.5]
    with pytest.raises(ValueError, match="shape"):
        pair_norms(g[:2], BITS)


def _recorded_frame():
    rec = GradientRecorder(BITS, every=1)
    calm = torch.zeros(3, 8, 1)
    calm[0, :2], calm[1, :4], calm[2] = 1.0, 1.0, 1.0
    typical = calm.clone()
    typical[1, :2] = -1.5  # c_(2,4) = -3, tau = 1: alpha = 1/3, norms of similar size
    extreme = calm.clone()
    extreme[0, :2] = 0.1  # tiny short gradient: tau tiny, alpha extreme, norm ratio 10 > 4
    extreme[1, :2] = -1.0
    for step, g in enumerate([calm, typical, extreme]):
        rec(step // 2, step, _output(g), model=None)
    return rec.frame()


def test_conflict_cases_and_choose_conflicts_skip_unreadable_extremes():
    f = _recorded_frame()
    cases = conflict_cases(f)
    assert len(cases) == 3 * 3 and set(cases.columns) >= {"row", "short", "long", "cosine", "alpha", "fired"}
    fired = cases[cases["fired"]]
    assert set(zip(fired["row"], fired["short"], fired["long"])) == {(1, 2, 4), (2, 2, 4)}
    assert cases.loc[(cases["row"] == 2) & (cases["short"] == 2) & (cases["long"] == 4), "ratio"].item() == (
        pytest.approx(10.0))
    picks = choose_conflicts(f)
    assert picks["typical"] == (1, 2, 4) and picks["strongest"] == (1, 2, 4)  # row 2 is too lopsided
    assert choose_conflicts(f, max_ratio=20)["strongest"] == (2, 2, 4)
    assert choose_conflicts(f.iloc[[0]]) == {}
    with pytest.raises(ValueError, match="max_ratio"):
        choose_conflicts(f, max_ratio=0.5)


def test_describe_conflict_numbers_and_floor():
    f = _recorded_frame()
    d = describe_conflict(f, 1, 2, 4)
    assert d["c_ij"] == pytest.approx(-3.0) and d["tau_i"] == pytest.approx(1.0)
    assert d["alpha"] == pytest.approx(1 / 3) and d["cosine"] == pytest.approx(-1.0)
    assert d["own share"] == pytest.approx(1 - 3 / 2) and d["own share with rule"] == pytest.approx(0.5)
    assert d["floor"] == pytest.approx(0.5) and d["epoch"] == 0 and d["step"] == 1
    assert describe_conflict(f, 1, 4, 8, norm="shortest")["tau_i"] == pytest.approx(1.0)  # ||g_2||^2 / 2
    with pytest.raises(ValueError, match="short < long"):
        describe_conflict(f, 1, 8, 2)


def test_mean_matrices_average_per_epoch():
    f = _recorded_frame()
    mats, groups, bits = mean_matrices(f)
    assert groups == [0, 1] and bits == BITS and mats.shape == (2, 3, 3)
    assert mats[0, 0, 1] == pytest.approx(f.loc[[0, 1], "cos_2_4"].mean())
    with pytest.raises(ValueError, match="no column"):
        mean_matrices(f, by="nope")
