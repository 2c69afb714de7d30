"""All K lengths for the price of one (docs/method.md §5): every base loss computes its K terms
and their gradients ``d term_k / dh`` at once (``nested_gradients``: block products for the
pairwise and memory-bank terms, batched elementwise terms, batched backward passes for the
in-batch losses). In float64 each must equal the K losses computed one by one and
differentiated by autograd, memory banks included (what they hold afterwards too)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nhl import losses as L
from nhl.losses.prefix import blocks, prefix_backprop, prefix_products, prefix_row_sums

BITS = (8, 16, 32, 64, 128)
N_TRAIN = 60


def _labels(B, C, multi, gen):
    if multi:
        y = (torch.rand(B, C, generator=gen) < 0.3).double()
        y[y.sum(1) == 0, 0] = 1
        return y
    return F.one_hot(torch.randint(0, C, (B,), generator=gen), C).double()


def _setup(name, seed, B, multi, bits=BITS, fill=0.5, spread=1.0, **hyper):
    gen = torch.Generator().manual_seed(seed)
    losses = [f.double() for f in L.build_nested(name, bits, n_classes=6, n_train=N_TRAIN, seed=seed, **hyper)]
    h = torch.randn(B, bits[-1], generator=gen, dtype=torch.float64) * spread
    y = _labels(B, 6, multi, gen)
    idx = torch.randperm(N_TRAIN, generator=gen)[:B]
    if losses[0].bank is not None and fill > 0:  # an earlier batch in the banks, as in training
        n = int(fill * N_TRAIN)
        old = torch.randn(n, bits[-1], generator=gen, dtype=torch.float64) * spread
        old_y, old_idx = _labels(n, 6, multi, gen), torch.randperm(N_TRAIN, generator=gen)[:n]
        for f in losses:
            f.fill_bank(old[:, : f.bits], old_y, old_idx)
    return losses, h, y, idx


def _one_by_one(losses, h, y, idx):
    """The reference: each length's own loss on its prefix, differentiated by autograd."""
    hh = h.clone().requires_grad_()
    terms = [f(hh[:, : f.bits], y, idx) for f in losses]
    grads = [torch.autograd.grad(t, hh, retain_graph=True)[0] for t in terms]
    return torch.stack(terms).detach(), torch.stack(grads)


def _compare(name, losses, h, y, idx, rtol=1e-8, atol=1e-10):
    mine, theirs = copy.deepcopy(losses), copy.deepcopy(losses)
    got = type(mine[0]).nested_gradients(mine, h, y, idx)
    assert got is not None, f"{name}: no nested gradients"
    terms, dh = got
    want_terms, want_dh = _one_by_one(theirs, h, y, idx)
    # F.softplus (what the losses call) is linear above 20, so its autograd derivative there is
    # exactly 1 where the formulas' sigmoid gives 1 - e^-20: differences of ~2e-9 of the
    # gradient's scale, beside float64 rounding
    torch.testing.assert_close(terms, want_terms, rtol=rtol, atol=atol + 1e-8 * float(want_terms.abs().max()))
    torch.testing.assert_close(dh, want_dh, rtol=rtol, atol=atol + 1e-8 * float(want_dh.abs().max()))
    for k, f in enumerate(mine):
        assert (dh[k, :, f.bits:] == 0).all()
        if f.bank is not None:  # the banks hold exactly what the one-by-one losses wrote
            for buf in ("U", "Y", "filled"):
                assert torch.equal(getattr(f.bank, buf), getattr(theirs[k].bank, buf)), (name, buf)


@pytest.mark.parametrize("name", L.available())
@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval", "eval-empty"])
def test_nested_gradients_equal_autograd(name, multi, mode):
    losses, h, y, idx = _setup(name, 3, 24, multi, fill=0.0 if mode == "eval-empty" else 0.5)
    for f in losses:
        f.train(mode == "train")
    _compare(name, losses, h, y, idx)


@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(L.available()), seed=st.integers(0, 10_000), B=st.integers(2, 20),
       multi=st.booleans(), spread=st.floats(0.05, 4.0), K=st.integers(1, 5))
def test_nested_gradients_equal_autograd_anywhere(name, seed, B, multi, spread, K):
    losses, h, y, idx = _setup(name, seed, B, multi, bits=BITS[-K:], spread=spread)
    _compare(name, losses, h, y, idx)


@pytest.mark.parametrize("name", ["dsh", "dhn", "dbdh", "dpn", "csq", "dch"])
def test_per_length_hyper_parameters(name):
    losses, h, y, idx = _setup(name, 5, 16, False)
    for k, f in enumerate(losses):  # a different value at each length takes the general branches
        for attr in ("alpha", "lam", "m", "gamma", "eps", "margin"):
            if hasattr(f, attr) and isinstance(getattr(f, attr), float):
                setattr(f, attr, getattr(f, attr) * (1 + 0.5 * k))
    _compare(name, losses, h, y, idx)


@pytest.mark.parametrize("name", ["dsh", "dhn", "dbdh"])
def test_banks_out_of_step_fall_back(name):
    losses, h, y, idx = _setup(name, 1, 12, False)
    type(losses[0]).nested_gradients(losses, h, y, idx)  # in step: recorded
    losses[1].fill_bank(torch.zeros(1, losses[1].bits, dtype=torch.float64), y[:1], idx[:1] + 0)
    if torch.equal(losses[1].bank.U, losses[-1].bank.U[:, : losses[1].bits]):
        pytest.skip("the write happened to keep the prefix")
    assert type(losses[0]).nested_gradients(losses, h, y, idx) is None
    with torch.no_grad():  # a refresh of every bank from the same outputs brings them back in step
        for f in losses:
            f.fill_bank(h[:, : f.bits], y, idx)
    assert type(losses[0]).nested_gradients(losses, h, y, idx) is not None


@pytest.mark.parametrize("name", ["csq", "dpn"])
def test_independent_targets_fall_back(name):
    losses, h, y, idx = _setup(name, 2, 12, False, nested_targets=False)
    assert type(losses[0]).nested_gradients(losses, h, y, idx) is None


def test_block_products_and_their_backprop():
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(7, 128, generator=gen, dtype=torch.float64)
    v = torch.randn(9, 128, generator=gen, dtype=torch.float64)
    P = prefix_products(u, v, BITS)
    for k, b in enumerate(BITS):
        torch.testing.assert_close(P[k], u[:, :b] @ v[:, :b].T)
    G = torch.randn(5, 7, 9, generator=gen, dtype=torch.float64)
    dh = prefix_backprop(G, v, BITS)
    for k, b in enumerate(BITS):
        torch.testing.assert_close(dh[k, :, :b], G[k] @ v[:, :b])
        assert (dh[k, :, b:] == 0).all()
    torch.testing.assert_close(prefix_row_sums(u, BITS)[2], u[:, :32].sum(1))
    w = u.clone().requires_grad_()  # with a gradient to compute: stacked, differentiable
    prefix_products(w, v, BITS)[1].sum().backward()
    torch.testing.assert_close(w.grad[:, :16], v[:, :16].sum(0).expand(7, 16))
    assert (w.grad[:, 16:] == 0).all()
    assert blocks(BITS) == ((0, 8), (8, 16), (16, 32), (32, 64), (64, 128))


def _objective_step(name, closed, weighting, distill, seed=0):
    import nhl.objective as objective_mod
    from nhl.layer import NestedHashLayer
    from nhl.objective import NestedObjective

    torch.manual_seed(seed)
    layer = NestedHashLayer(24, BITS).double()
    with torch.no_grad():
        layer.weight.mul_(30)  # outputs of a trained layer's size, so the losses are not flat
    losses = L.build_nested(name, BITS, n_classes=6, n_train=N_TRAIN, seed=seed)
    obj = NestedObjective(layer, losses, weighting=weighting, distill=distill, beta=0.5).double()
    gen = torch.Generator().manual_seed(seed + 1)
    z = torch.randn(20, 24, generator=gen, dtype=torch.float64)
    y = _labels(20, 6, seed % 2 == 1, gen)
    idx = torch.randperm(N_TRAIN, generator=gen)[:20]
    if obj.losses[0].bank is not None:  # an earlier batch in the banks
        with torch.no_grad():
            prev = layer.project(torch.randn(30, 24, generator=gen, dtype=torch.float64))
            prev_y, prev_idx = _labels(30, 6, False, gen), torch.randperm(N_TRAIN, generator=gen)[:30]
            for f in obj.losses:
                f.fill_bank(prev[:, : f.bits], prev_y, prev_idx)
    old = objective_mod.USE_CLOSED_FORM
    objective_mod.USE_CLOSED_FORM = closed
    try:
        zz = z.clone().requires_grad_()
        out = obj(zz, y, idx)
        out.total.backward()
    finally:
        objective_mod.USE_CLOSED_FORM = old
    return out, zz.grad, layer.weight.grad, layer.bias.grad, obj


@pytest.mark.parametrize("name", L.available())
@pytest.mark.parametrize("weighting,distill", [("dominance", 1.0), ("dominance", 100.0), ("uniform", 0.0), ("dominance", 0.0)])
def test_objective_equal_with_and_without_the_nested_gradients(name, weighting, distill):
    """Losses, weights, alphas, cosines and every parameter gradient of a nested step are the
    same whether the K terms come from ``nested_gradients`` or one by one through autograd."""
    fast = _objective_step(name, True, weighting, distill)
    ref = _objective_step(name, False, weighting, distill)
    tol = dict(rtol=1e-7, atol=1e-10)
    for attr in ("total", "losses", "distill", "weights"):
        torch.testing.assert_close(getattr(fast[0], attr).detach(), getattr(ref[0], attr).detach(), **tol)
    if weighting == "dominance":
        torch.testing.assert_close(fast[0].alphas, ref[0].alphas, **tol)
        torch.testing.assert_close(fast[0].cosines, ref[0].cosines, **tol)
    for a, b in zip(fast[1:4], ref[1:4]):
        torch.testing.assert_close(a, b, **tol)
    for f, g in zip(fast[4].losses, ref[4].losses):  # the banks were written alike
        if f.bank is not None:
            assert torch.equal(f.bank.U, g.bank.U) and torch.equal(f.bank.filled, g.bank.filled)


def test_the_rule_acts_on_some_pairwise_loss():
    """The comparison above is not vacuous: for some loss the dominance rule rescales."""
    fired = [_objective_step(name, True, "dominance", 100.0)[0].anti_domination for name in L.available()]
    assert sum(fired) >= 2, fired
