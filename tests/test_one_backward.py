"""The training step backpropagates once (issue: one backward per step) and equals the
straightforward step it replaced: K ``autograd.grad`` calls for the weighting's per-length
gradients, each loss and distillation term computed on its own, then ``total.backward()``
through the whole graph again. Weights, losses and every parameter gradient must agree to float
tolerance, for memory-bank, pairwise and centre-based losses and every ablation variant."""

import copy

import pytest
import torch

from nhl import experiments
from nhl.config import TrainConfig
from nhl.distill import _cascade_loop
from nhl.train import build, refresh_banks
from nhl.weighting import dominance_aware_weights


@pytest.fixture(scope="module")
def splits():
    return experiments.get_splits(TrainConfig(protocol="quick"))


def reference_step(model, objective, x, y, idx):
    """The step as it was computed before: a second pass through the loss graph."""
    z = model.features(x)
    h = objective.layer.project(z)
    outs = objective.layer.split(h)
    base = [loss(u, y, idx) for loss, u in zip(objective.losses, outs)]
    if objective.distill > 0 and len(outs) > 1:
        sp = _cascade_loop(outs, objective.distill_mode, objective.detach_teacher)
    else:
        sp = [h.new_zeros(()) for _ in outs]
    objs = [b + objective.distill * s for b, s in zip(base, sp)]
    if objective.weighting == "dominance":
        grads = objective.per_length_gradients(objs, h, z)
        w = dominance_aware_weights(grads, objective.bit_list, beta=objective.beta, norm=objective.norm)
    else:
        w = h.new_ones(len(outs))
    total = torch.stack(objs).mul(w).sum()
    total.backward()
    return w.detach(), torch.stack(base).detach(), torch.stack(sp).detach(), total.detach()


CASES = [
    ("csq", "nhl", {}),
    ("csq", "weighting", {"center_design": "sylvester", "nested_targets": False}),
    ("dpn", "nhl", {}),
    ("dhn", "nhl", {}),
    ("dhn", "distill", {}),
    ("dsh", "weighting", {}),
    ("dtsh", "nhl", {}),
    ("dch", "plain", {}),
    ("lcdsh", "nhl", {"detach_teacher": False}),
    ("dbdh", "nhl", {"distill_mode": "longest"}),
    ("dch", "nhl", {"distill_mode": "all_pairs", "norm": "shortest", "beta": 0.5}),
]


@pytest.mark.parametrize("method,variant,changes", CASES, ids=[f"{m}-{v}-{len(c)}" for m, v, c in CASES])
def test_new_step_equals_the_two_pass_step(splits, method, variant, changes):
    config = TrainConfig(method=method, protocol="quick", **changes).variant(variant)
    model, objective = build(config, splits)
    refresh_banks(model, objective, splits.train, config.batch_size)
    # float64, so that the comparison measures the algorithm, not float32 cancellation in
    # near-orthogonal gradients (alpha = tau / -c is ill-conditioned when c is near 0)
    model.double(), objective.double()
    ref_model, ref_objective = copy.deepcopy((model, objective))  # one copy: shared layer
    # plain SGD: Adam would turn float noise in near-zero gradients into full-size steps
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=1e-2)
    model.train(), objective.train(), ref_model.train(), ref_objective.train()
    gen = torch.Generator().manual_seed(1)
    fired = False
    for _ in range(3):
        x, y, idx = splits.train.get_batch(torch.randperm(len(splits.train), generator=gen)[:64])
        x, y = x.double(), y.double()
        torch.manual_seed(0)
        ref_opt.zero_grad(set_to_none=True)
        w_ref, base_ref, sp_ref, total_ref = reference_step(ref_model, ref_objective, x, y, idx)
        torch.manual_seed(0)
        opt.zero_grad(set_to_none=True)
        out = objective(model.features(x), y, idx)
        out.total.backward()
        fired |= out.anti_domination
        torch.testing.assert_close(out.weights, w_ref, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(out.losses, base_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(out.distill, sp_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(out.total.detach(), total_ref, rtol=1e-10, atol=1e-12)
        for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
            scale = float(q.grad.abs().max())
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-9 * scale + 1e-12, msg=lambda m, n=name: f"{n}: {m}")
        opt.step()
        ref_opt.step()
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-11)
    if config.weighting == "dominance":
        assert out.cosines is not None and out.cosines.shape == (5, 5)


@pytest.mark.parametrize("closed", [True, False])
def test_one_backward_pass_through_the_losses(splits, monkeypatch, closed):
    """The loss graph is traversed once per step: on the autograd path autograd is entered
    once for the K per-length gradients and once for the final backward; DHN's closed form
    (every base loss has one, docs/method.md §5) enters it only for the final backward."""
    import nhl.objective as objective_mod

    monkeypatch.setattr(objective_mod, "USE_CLOSED_FORM", closed)
    config = TrainConfig(method="dhn", protocol="quick")
    model, objective = build(config, splits)
    x, y, idx = splits.train.get_batch(torch.arange(32))
    calls = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = objective(model.features(x), y, idx)
    out.total.backward()
    assert len(calls) == (0 if closed else 1)
    with pytest.raises(RuntimeError):  # the loss graph was freed: it is not walked again
        torch.stack([out.total]).sum().backward()
