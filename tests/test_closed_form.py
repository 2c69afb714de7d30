"""Closed-form per-length gradients (issue 12, target 1): CSQ's K losses and the cascade's SP
terms are differentiated by formula instead of by autograd. Each formula must equal autograd
on the same inputs, the objective must give the same weights, losses and parameter gradients
with and without them, and the objective must fall back to autograd wherever no formula applies.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import nhl.objective as objective_mod
from nhl.distill import cascade_gradients, cascade_loss
from nhl.layer import NestedHashLayer
from nhl.losses import build_nested
from nhl.losses.csq import CSQLoss
from nhl.objective import NestedObjective

BITS = (8, 16, 32, 64, 128)


def _labels(B, C, multi, gen, dtype):
    if multi:
        y = (torch.rand(B, C, generator=gen) < 0.3).to(dtype)
        y[y.sum(1) == 0, 0] = 1
        return y
    return F.one_hot(torch.randint(0, C, (B,), generator=gen), C).to(dtype)


def _csq_reference(losses, h, y):
    """Each length's CSQ loss from its own definition, with an exact softplus (logaddexp)."""
    out = []
    for f in losses:
        u = h[:, : f.bits]
        t = f.targets_for(y)
        center = torch.logaddexp(-2 * u * t, torch.zeros_like(u)).mean()  # BCE(sigmoid(2u), (t+1)/2)
        out.append(center + f.lam * (torch.tanh(u).abs() - 1).pow(2).mean())
    return torch.stack(out)


def _autograd_rows(terms, h):
    """d terms[k] / d h for every k by autograd, stacked (K, B, L)."""
    return torch.stack([torch.autograd.grad(t, h, retain_graph=True, allow_unused=True)[0]
                        if t.requires_grad else torch.zeros_like(h) for t in terms])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), B=st.integers(2, 40), multi=st.booleans(),
       spread=st.floats(0.1, 6.0), lams=st.booleans())
def test_csq_gradients_equal_autograd(seed, B, multi, spread, lams):
    gen = torch.Generator().manual_seed(seed)
    C = 10
    losses = list(build_nested("csq", BITS, n_classes=C, n_train=100, seed=seed))
    if lams:  # a different lambda per length takes the general branch
        for k, f in enumerate(losses):
            f.lam = 10.0 ** -k
    h = (torch.randn(B, BITS[-1], generator=gen, dtype=torch.float64) * spread).requires_grad_()
    y = _labels(B, C, multi, gen, torch.float64)
    want = _csq_reference(losses, h, y)
    terms, dh = CSQLoss.nested_gradients(losses, h.detach(), y, None)
    torch.testing.assert_close(terms, want.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(dh, _autograd_rows(list(want), h), rtol=1e-10, atol=1e-14)
    # the autograd path's loss: F.softplus returns x itself above x = 20 (error <= e^-20)
    batched = torch.stack(CSQLoss.nested_terms(losses, [h[:, :b] for b in BITS], y, None))
    torch.testing.assert_close(terms, batched.detach(), rtol=0, atol=1e-8)
    for k, b in enumerate(BITS):  # nothing beyond a length's own columns
        assert (dh[k, :, b:] == 0).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), B=st.integers(2, 40), mode=st.sampled_from(["adjacent", "longest"]),
       K=st.integers(1, 5))
def test_cascade_gradients_equal_autograd(seed, B, mode, K):
    gen = torch.Generator().manual_seed(seed)
    bits = BITS[-K:]
    h = torch.randn(B, bits[-1], generator=gen, dtype=torch.float64).requires_grad_()
    want = cascade_loss([h[:, :b] for b in bits], mode=mode, detach_teacher=True)
    terms, dh = cascade_gradients(h.detach(), bits, mode=mode)
    torch.testing.assert_close(terms, torch.stack(want).detach(), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(dh, _autograd_rows(want, h), rtol=1e-9, atol=1e-14)
    assert (dh[-1] == 0).all()  # the longest code has no teacher, and teachers get no gradient


def test_cascade_gradients_with_a_zero_row_and_bad_input():
    h = torch.randn(6, 32, dtype=torch.float64)
    h[2] = 0  # its Gram row is 0: F.normalize divides by eps there
    hg = h.clone().requires_grad_()
    want = cascade_loss([hg[:, :b] for b in (8, 16, 32)])
    terms, dh = cascade_gradients(h, (8, 16, 32))
    torch.testing.assert_close(terms, torch.stack(want).detach())
    torch.testing.assert_close(dh, _autograd_rows(want, hg))
    assert cascade_gradients(h, (8, 16, 32), mode="all_pairs") is None
    with pytest.raises(ValueError, match="must end with"):
        cascade_gradients(h, (8, 16))
    with pytest.raises(ValueError, match="distill_mode"):
        cascade_gradients(h, (8, 16, 32), mode="nearest")


def _objective(dtype=torch.float64, **kw):
    torch.manual_seed(0)
    layer = NestedHashLayer(24, BITS).to(dtype)
    losses = build_nested("csq", BITS, n_classes=10, n_train=100, nested_targets=kw.pop("nested_targets", True))
    return NestedObjective(layer, losses, **kw).to(dtype)


def _step(obj, z, y, scale, closed):
    old = objective_mod.USE_CLOSED_FORM
    objective_mod.USE_CLOSED_FORM = closed
    try:
        zz = z.clone().requires_grad_()
        obj.layer.zero_grad(set_to_none=True)
        out = obj(zz, y, torch.arange(len(z)), scale=scale)
        out.total.backward()
    finally:
        objective_mod.USE_CLOSED_FORM = old
    return out, zz.grad, obj.layer.weight.grad, obj.layer.bias.grad


@pytest.mark.parametrize("weighting,distill,mode,multi,scale,dtype", [
    ("dominance", 1.0, "adjacent", False, 1.0, torch.float64),
    ("dominance", 0.3, "longest", True, 0.5, torch.float64),
    ("uniform", 1.0, "adjacent", True, 1.0, torch.float64),
    ("uniform", 0.0, "adjacent", False, 1.0, torch.float64),
    ([1.0, 0.5, 2.0, 1.0, 0.1], 1.0, "adjacent", False, 1.0, torch.float64),
    ("dominance", 1.0, "adjacent", True, 1.0, torch.float32),
])
def test_objective_equal_with_and_without_closed_form(weighting, distill, mode, multi, scale, dtype):
    obj = _objective(dtype, weighting=weighting, distill=distill, distill_mode=mode, beta=0.3)
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(48, 24, generator=gen, dtype=dtype) * 2
    y = _labels(48, 10, multi, gen, dtype)
    assert obj.closed_form(obj.layer.project(z.requires_grad_()), y, torch.arange(48)) is not None
    fast, ref = _step(obj, z.detach(), y, scale, True), _step(obj, z.detach(), y, scale, False)
    tol = dict(rtol=1e-10, atol=1e-13) if dtype == torch.float64 else dict(rtol=2e-5, atol=1e-7)
    for name in ("total", "losses", "distill", "weights"):
        torch.testing.assert_close(getattr(fast[0], name).detach(), getattr(ref[0], name).detach(), **tol)
    if weighting == "dominance":
        torch.testing.assert_close(fast[0].alphas, ref[0].alphas, **tol)
        torch.testing.assert_close(fast[0].cosines, ref[0].cosines, **tol)
    else:
        assert fast[0].cosines is None and ref[0].cosines is None  # not measured, as before
    for a, b in zip(fast[1:], ref[1:]):
        torch.testing.assert_close(a, b, **tol)


def test_dominance_rule_fires_on_the_closed_form_path():
    """A strong distillation term opposes the 8-bit code's gradient on its rows (CSQ's own
    per-length gradients are parallel), so the rule rescales; both paths agree on it."""
    obj = _objective(weighting="dominance", distill=10.0, beta=0.2)
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(64, 24, generator=gen, dtype=torch.float64) * 3
    y = _labels(64, 10, True, gen, torch.float64)
    fast, ref = _step(obj, z, y, 1.0, True), _step(obj, z, y, 1.0, False)
    assert fast[0].anti_domination and ref[0].anti_domination
    assert not torch.allclose(fast[0].weights, torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(fast[0].weights, ref[0].weights, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(fast[3], ref[3], rtol=1e-10, atol=1e-13)


def test_closed_form_takes_no_autograd_pass_through_the_losses(monkeypatch):
    obj = _objective(weighting="dominance", distill=1.0)
    calls = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or real(*a, **k))
    z = torch.randn(16, 24, dtype=torch.float64, requires_grad=True)
    out = obj(z, F.one_hot(torch.arange(16) % 10, 10).double(), torch.arange(16))
    out.total.backward()
    assert calls == [] and z.grad is not None


@pytest.mark.parametrize("change", ["independent targets", "teacher not detached", "all pairs",
                                    "no grad", "switched off", "centres edited"])
def test_falls_back_to_autograd_where_no_formula_applies(change):
    kw = dict(weighting="dominance", distill=1.0)
    if change == "independent targets":
        kw["nested_targets"] = False
    elif change == "teacher not detached":
        kw["detach_teacher"] = False
    elif change == "all pairs":
        kw["distill_mode"] = "all_pairs"
    obj = _objective(**kw)
    z = torch.randn(16, 24, dtype=torch.float64, requires_grad=True)
    y, idx = F.one_hot(torch.arange(16) % 10, 10).double(), torch.arange(16)
    h = obj.layer.project(z)
    if change == "no grad":
        h = h.detach()
    if change == "centres edited":
        assert obj.closed_form(h, y, idx) is not None
        with torch.no_grad():
            obj.losses[0].centers[0, 0] *= -1  # no longer a prefix of the longest's centres
    old = objective_mod.USE_CLOSED_FORM
    objective_mod.USE_CLOSED_FORM = change != "switched off"
    try:
        if change == "no grad":
            with torch.no_grad():  # evaluation: values only, from the losses themselves
                out = obj(z, y, idx)
            assert not out.total.requires_grad
            torch.testing.assert_close(out.losses, obj.closed_form(obj.layer.project(z), y, idx)[0])
        else:
            assert obj.closed_form(h, y, idx) is None
            out = obj(z, y, idx)
            out.total.backward()  # autograd path still trains
            assert obj.layer.weight.grad is not None
    finally:
        objective_mod.USE_CLOSED_FORM = old


def test_a_subclass_that_changes_the_loss_is_not_given_its_parents_formulas():
    """A CSQ subclass with its own ``loss`` inherits ``nested_terms``/``nested_gradients``
    written for CSQ's loss; the objective must compute the subclass's loss instead."""

    class Doubled(CSQLoss):
        def loss(self, u, y, idx):
            return 2 * super().loss(u, y, idx)

    layer = NestedHashLayer(24, BITS).double()
    losses = [Doubled(b, 10, 100, centers=f.centers, tie_break=f.tie_break)
              for b, f in zip(BITS, build_nested("csq", BITS, n_classes=10, n_train=100))]
    obj = NestedObjective(layer, losses, weighting="uniform", distill=0.0).double()
    z = torch.randn(16, 24, dtype=torch.float64, requires_grad=True)
    y = F.one_hot(torch.arange(16) % 10, 10).double()
    h = layer.project(z)
    assert obj.closed_form(h, y, torch.arange(16)) is None
    out = obj(z, y, torch.arange(16))
    want = torch.stack([f(h[:, :b], y) for f, b in zip(losses, BITS)]).detach()
    torch.testing.assert_close(out.losses, want)
