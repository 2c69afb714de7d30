"""Tests for nhl.losses: hand-computed values on tiny inputs, banks, registry, nested targets.

Every expected value is computed here with plain numpy / math from the formulas of docs/method.md
§2 (often in the papers' original, non-stable form), not through the package's code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nhl.losses as L
from nhl.losses import targets as T

NAMES = ["csq", "dbdh", "dch", "dhn", "dpn", "dsh", "dtsh", "lcdsh"]

# a tiny batch: B = 3, bits = 4, C = 2 (samples 0 and 2 share class 0); note the exact 0.0
U3 = np.array([[0.5, -1.0, 2.0, 0.0], [-0.3, 0.8, 1.5, -2.0], [1.2, 0.1, -0.7, 0.4]])
Y3 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
IDX3 = [0, 1, 2]


def tens(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def sim(ya, yb) -> np.ndarray:
    return np.array([[1.0 if np.dot(a, b) > 0 else 0.0 for b in yb] for a in ya])


def sgn(x) -> np.ndarray:
    return np.where(np.asarray(x) >= 0, 1.0, -1.0)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def build64(name: str, *args, **hyper) -> L.HashLoss:
    """A loss in float64 (banks included) so hand values can be matched to 1e-9."""
    return L.build(name, *args, **hyper).double()


def run(loss, u, y, idx=None) -> float:
    return float(loss(tens(u), tens(y), None if idx is None else torch.tensor(idx)))


def close(a: float, b: float) -> None:
    assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------- hand-computed values, per loss
def ref_dsh(u, y, bank_u, bank_y, m, alpha) -> float:
    s = sim(y, bank_y)
    total = 0.0
    for i in range(len(u)):
        for j in range(len(bank_u)):
            d = float(np.sum((u[i] - bank_u[j]) ** 2))
            total += 0.5 * s[i, j] * d + 0.5 * (1 - s[i, j]) * max(m - d, 0.0)
    return total / (len(u) * len(bank_u)) + alpha * np.mean(np.abs(1 - np.abs(u)))


def ref_dhn_pairs(u, y, bank_u, bank_y) -> float:
    s = sim(y, bank_y)
    vals = [
        math.log(1 + math.exp(0.5 * u[i] @ bank_u[j])) - s[i, j] * 0.5 * u[i] @ bank_u[j]
        for i in range(len(u))
        for j in range(len(bank_u))
    ]
    return float(np.mean(vals))


def test_dsh_value_on_fresh_bank():
    loss = build64("dsh", 4, 2, 5)
    assert loss.m == 8.0  # m = 2L
    close(run(loss, U3, Y3, IDX3), ref_dsh(U3, Y3, U3, Y3, m=8.0, alpha=0.1))


def test_dsh_custom_margin_and_bank_from_two_batches():
    loss = build64("dsh", 4, 2, 5, m=3.0, alpha=0.5)
    run(loss, U3[:2], Y3[:2], [0, 1])
    # second batch written at id 4: the reference set is ids {0, 1, 4}; ids 2, 3 are unfilled
    u2, y2 = U3[2:] * 2, Y3[2:]
    bank_u = np.stack([U3[0], U3[1], u2[0]])
    bank_y = np.stack([Y3[0], Y3[1], y2[0]])
    close(run(loss, u2, y2, [4]), ref_dsh(u2, y2, bank_u, bank_y, m=3.0, alpha=0.5))


def test_dhn_value_two_batches():
    loss = build64("dhn", 4, 2, 5)
    first = ref_dhn_pairs(U3[:2], Y3[:2], U3[:2], Y3[:2])
    quant = lambda u: 0.1 * np.mean(np.log(np.cosh(np.abs(u) - 1)))  # noqa: E731
    close(run(loss, U3[:2], Y3[:2], [0, 1]), first + quant(U3[:2]))
    u2 = U3[2:] - 0.25
    bank_u = np.stack([U3[0], U3[1], u2[0]])
    bank_y = np.stack([Y3[0], Y3[1], Y3[2]])
    close(run(loss, u2, Y3[2:], [3]), ref_dhn_pairs(u2, Y3[2:], bank_u, bank_y) + quant(u2))


def test_dbdh_value_uses_clamped_outputs():
    loss = build64("dbdh", 4, 2, 5, alpha=0.3)
    v = np.clip(U3, -1, 1)
    expected = ref_dhn_pairs(v, Y3, v, Y3) + 0.3 * np.mean(np.mean(v, axis=1) ** 2)
    close(run(loss, U3, Y3, IDX3), expected)
    np.testing.assert_allclose(loss.U[:3].numpy(), v)  # the bank stores clamp(u)


def test_dpn_value_with_explicit_targets():
    t = np.array([[1.0, 1, -1, -1], [1, -1, 1, -1]])
    loss = L.build("dpn", 4, 2, 5, targets=t)
    tt = t[[0, 1, 0]]
    close(run(loss, U3, Y3), float(np.mean(np.maximum(0, 1 - U3 * tt))))
    loss2 = L.build("dpn", 4, 2, 5, targets=t, m=2.5)
    close(run(loss2, U3, Y3), float(np.mean(np.maximum(0, 2.5 - U3 * tt))))


def test_csq_value_with_default_hadamard_centers():
    loss = L.build("csq", 4, 2, 5, lam=0.5)
    centers = np.array([[1.0, 1, 1, 1], [1, -1, 1, -1]])  # first rows of Sylvester H_4
    np.testing.assert_array_equal(loss.centers.numpy(), centers)
    c = centers[[0, 1, 0]]
    p, q = (np.tanh(U3) + 1) / 2, (c + 1) / 2
    bce = -np.mean(q * np.log(p) + (1 - q) * np.log(1 - p))
    close(run(loss, U3, Y3), bce + 0.5 * np.mean((np.abs(np.tanh(U3)) - 1) ** 2))


def test_csq_is_stable_where_tanh_saturates():
    loss = L.build("csq", 4, 2, 5)
    u = torch.tensor([[30.0, -30.0, 30.0, -30.0]], requires_grad=True)
    value = loss(u, torch.tensor([[1.0, 0.0]]))  # center (1, 1, 1, 1): BCE = (0 + 60 + 0 + 60) / 4
    value.backward()
    assert float(value.detach()) == pytest.approx(30.0, rel=1e-4)
    assert torch.isfinite(u.grad).all() and (u.grad.abs() > 0).any()


def ref_dtsh(u, y, margin, lam) -> float:
    s = sim(y, y)
    vals = []
    for a in range(len(u)):
        for p in range(len(u)):
            for n in range(len(u)):
                if p != a and n != a and s[a, p] == 1 and s[a, n] == 0:
                    t = u[a] @ u[p] - u[a] @ u[n] - margin
                    vals.append(-(t - math.log(1 + math.exp(t))))
    trip = float(np.mean(vals)) if vals else 0.0
    return trip + lam * float(np.mean((u - sgn(u)) ** 2))


def test_dtsh_value():
    u = np.vstack([U3, [[0.2, -0.4, 0.9, 1.1]]]) * 0.7
    y = np.array([[1.0, 0], [0, 1], [1, 0], [0, 1]])  # 8 valid triplets
    close(run(L.build("dtsh", 4, 2, 5), u, y), ref_dtsh(u, y, margin=5.0, lam=1.0))
    loss = L.build("dtsh", 4, 2, 5, margin=0.5, lam=0.25)
    close(run(loss, u, y), ref_dtsh(u, y, margin=0.5, lam=0.25))


def test_dtsh_without_valid_triplet_is_quantisation_only_and_differentiable():
    loss = L.build("dtsh", 4, 2, 5)
    u = tens(U3).requires_grad_()
    y = tens([[1.0, 0], [1, 0], [1, 0]])  # no negatives at all
    value = loss(u, y)
    close(float(value.detach()), float(np.mean((U3 - sgn(U3)) ** 2)))
    value.backward()
    assert torch.isfinite(u.grad).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 7), st.integers(0, 2**31 - 1))
def test_dtsh_matches_triplet_loop(batch, seed):
    gen = np.random.default_rng(seed)
    u = gen.normal(size=(batch, 4))
    y = np.eye(3)[gen.integers(0, 3, batch)]
    close(run(L.build("dtsh", 4, 3, 5, margin=1.0), u, y), ref_dtsh(u, y, margin=1.0, lam=1.0))


def ref_dch(u, y, gamma, lam, eps) -> float:
    n, bits = u.shape

    def dist(a, b):
        cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        return bits / 2 * (1 - cos)

    s = sim(y, y)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    n1 = sum(s[i, j] for i, j in pairs)
    n0 = len(pairs) - n1
    total = 0.0
    for i, j in pairs:
        d = dist(u[i], u[j]) + eps
        w = (len(pairs) / n1 if s[i, j] else len(pairs) / n0) if n1 and n0 else 1.0
        # the paper's form: w [ s log(d / gamma) + log(1 + gamma / d) ]
        total += w * (s[i, j] * math.log(d / gamma) + math.log(1 + gamma / d))
    quant = np.mean([math.log(1 + dist(np.abs(r), np.ones(bits)) / gamma) for r in u])
    return total / len(pairs) + lam * quant


def test_dch_value_class_balanced():
    close(run(L.build("dch", 4, 2, 5), U3, Y3), ref_dch(U3, Y3, gamma=20.0, lam=0.1, eps=0.01))
    loss = L.build("dch", 4, 2, 5, gamma=2.0, lam=1.0, eps=0.5)
    close(run(loss, U3, Y3), ref_dch(U3, Y3, gamma=2.0, lam=1.0, eps=0.5))


def test_dch_single_kind_batch_uses_plain_mean():
    y = np.array([[1.0, 0], [1, 0], [1, 0]])
    close(run(L.build("dch", 4, 2, 5), U3, y), ref_dch(U3, y, gamma=20.0, lam=0.1, eps=0.01))


def test_dch_nearly_collapsed_dissimilar_pair_keeps_a_gradient():
    # cos(u_0, u_1) > 0.99: where the public code's clamp of cos left no gradient
    loss = L.build("dch", 4, 2, 5, lam=0.0)
    u = torch.tensor([[1.0, 1, -1, 1], [1.0, 1.05, -1, 1]], dtype=torch.float64)
    u.requires_grad_()
    assert float(torch.cosine_similarity(u[0], u[1], dim=0).detach()) > 0.99
    loss(u, torch.tensor([[1.0, 0], [0, 1]])).backward()
    assert torch.isfinite(u.grad).all() and u.grad.abs().sum() > 1e-3


def test_lcdsh_value():
    s = 2 * sim(Y3, Y3) - 1
    b = sgn(U3)
    l1, l2 = [], []
    for i in range(3):
        for j in range(3):
            if i != j:
                th = 0.5 * U3[i] @ U3[j]
                l1.append(math.log(1 + math.exp(-s[i, j] * th)))
                l2.append((sigmoid(th) - sigmoid(0.5 * b[i] @ b[j])) ** 2)
    close(run(L.build("lcdsh", 4, 2, 5), U3, Y3), np.mean(l1) + 3.0 * np.mean(l2))


# ---------------------------------------------------------------- every loss: gradients, shapes
def multi_label_batch(bits: int, n_classes: int = 3, batch: int = 6):
    gen = torch.Generator().manual_seed(1)
    u = torch.randn(batch, bits, generator=gen, requires_grad=True)
    y = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1]])
    return u, y[:batch, :n_classes], torch.arange(batch)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_flow_and_are_finite_with_multi_label_input(name):
    loss = L.build(name, 8, 3, 10)
    u, y, idx = multi_label_batch(8)
    value = loss(u, y, idx)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_single_sample_batch_is_finite(name):
    loss = L.build(name, 8, 3, 10)
    u = torch.randn(1, 8, requires_grad=True)
    value = loss(u, torch.tensor([[0.0, 1, 0]]), torch.tensor([4]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(u.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_shape_and_type_errors(name):
    loss = L.build(name, 4, 2, 5)
    u, y, idx = tens(U3), tens(Y3), torch.tensor(IDX3)
    with pytest.raises(ValueError, match="4"):
        loss(tens(U3[:, :3]), y, idx)  # wrong number of bits
    with pytest.raises(ValueError, match="n_classes"):
        loss(u, tens(np.ones((3, 3))), idx)
    with pytest.raises(ValueError, match="n_classes"):
        loss(u, y[:2], idx)  # rows of y do not match u
    with pytest.raises(ValueError, match="one-hot"):
        loss(u, torch.tensor([0, 1, 0]), idx)
    with pytest.raises(ValueError, match="idx"):
        loss(u, y, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="idx"):
        loss(u, y, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="floating"):
        loss(torch.ones(3, 4, dtype=torch.long), y, idx)


# ---------------------------------------------------------------- memory banks
BANKED = ["dbdh", "dhn", "dsh"]


def test_uses_bank_flags():
    assert sorted(n for n in NAMES if L.build(n, 4, 2, 5).uses_bank) == BANKED
    assert all(L.LOSSES[n].uses_bank == (n in BANKED) for n in NAMES)


@pytest.mark.parametrize("name", BANKED)
def test_bank_written_in_train_mode_only(name):
    loss = L.build(name, 4, 2, 6)
    assert loss.training  # nn.Module default
    run(loss, U3, Y3, [5, 0, 2])
    stored = np.clip(U3, -1, 1) if name == "dbdh" else U3
    np.testing.assert_allclose(loss.U[[5, 0, 2]].numpy(), stored)
    np.testing.assert_array_equal(loss.Y[[5, 0, 2]].numpy(), Y3)
    assert loss.bank.filled.tolist() == [True, False, True, False, False, True]
    before = {k: v.clone() for k, v in loss.state_dict().items()}

    loss.eval()
    value = loss(tens(U3 + 1.0), tens(Y3[::-1].copy()), torch.tensor([1, 3, 4]))
    assert torch.isfinite(value)
    for k, v in loss.state_dict().items():
        assert torch.equal(v, before[k]), f"eval mode changed {k}"
    # eval ids need not be in range: they are not read
    loss(tens(U3), tens(Y3), torch.tensor([100, 200, 300]))


def test_eval_loss_against_bank_is_the_hand_value():
    loss = build64("dhn", 4, 2, 5)
    run(loss, U3[:2], Y3[:2], [0, 1])
    loss.eval()
    u = U3[2:]
    expected = ref_dhn_pairs(u, Y3[2:], U3[:2], Y3[:2])
    expected += 0.1 * np.mean(np.log(np.cosh(np.abs(u) - 1)))
    close(run(loss, u, Y3[2:]), expected)  # idx may be None in eval mode


@pytest.mark.parametrize("name", BANKED)
def test_eval_with_empty_bank_compares_the_batch_with_itself(name):
    trained, evaluated = build64(name, 4, 2, 5), build64(name, 4, 2, 5).eval()
    close(run(evaluated, U3, Y3), run(trained, U3, Y3, IDX3))
    assert not evaluated.bank.filled.any() and not evaluated.U.any()


@pytest.mark.parametrize("name", BANKED)
def test_bank_needs_valid_ids_in_train_mode(name):
    loss = L.build(name, 4, 2, 5)
    with pytest.raises(ValueError, match="idx"):
        loss(tens(U3), tens(Y3))
    with pytest.raises(ValueError, match=r"\[0, n_train=5\)"):
        loss(tens(U3), tens(Y3), torch.tensor([0, 1, 5]))
    with pytest.raises(ValueError, match="n_train"):
        loss(tens(U3), tens(Y3), torch.tensor([-1, 1, 2]))


@pytest.mark.parametrize("name", BANKED)
def test_bank_write_keeps_earlier_graphs_valid(name):
    loss = L.build(name, 4, 2, 5)
    u = tens(U3).requires_grad_()
    first = loss(u, tens(Y3), torch.tensor(IDX3))
    second = loss(u * 2, tens(Y3), torch.tensor(IDX3))  # rewrites the same rows
    (first + second).backward()  # would fail if the bank were modified in place
    assert torch.isfinite(u.grad).all()


def test_bank_is_in_state_dict_and_reset():
    loss = L.build("dsh", 4, 2, 5)
    assert {"bank.U", "bank.Y", "bank.filled"} <= set(loss.state_dict())
    run(loss, U3, Y3, IDX3)
    fresh = L.build("dsh", 4, 2, 5)
    fresh.load_state_dict(loss.state_dict())
    assert torch.equal(fresh.U, loss.U) and fresh.bank.n_filled == 3
    loss.bank.reset()
    assert loss.bank.n_filled == 0 and not loss.U.any()


def test_batch_losses_have_no_bank():
    with pytest.raises(AttributeError):
        _ = L.build("csq", 4, 2, 5).U


# ---------------------------------------------------------------- registry and hyper-parameters
def test_registry_names():
    assert L.available() == NAMES
    for name in NAMES:
        loss = L.build(name.upper(), 8, 3, 10)
        assert isinstance(loss, L.HashLoss) and loss.name == name
        assert type(loss) is L.LOSSES[name]


def test_build_errors():
    with pytest.raises(ValueError, match="csq, dbdh, dch"):
        L.build("hashnet", 8, 3, 10)
    with pytest.raises(TypeError, match="accepted: alpha, m"):
        L.build("dsh", 8, 3, 10, margin=3)
    with pytest.raises(TypeError, match="lam"):
        L.build("dtsh", 8, 3, 10, alpha=5)
    with pytest.raises(ValueError, match="n_classes"):
        L.build("csq", 8, 0, 10)
    with pytest.raises(TypeError, match="bits"):
        L.build("dsh", 8.0, 3, 10)
    with pytest.raises(ValueError, match="alpha"):
        L.build("dhn", 8, 3, 10, alpha=-1)
    with pytest.raises(ValueError, match="centers"):
        L.build("csq", 8, 3, 10, centers=torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"\+1/-1"):
        L.build("dpn", 4, 2, 10, targets=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="valid names"):
        L.build_nested("nope", (8, 16), 3, 10)


def test_defaults_follow_the_method_table():
    expect = {
        "dsh": {"m": 16.0, "alpha": 0.1},
        "dhn": {"alpha": 0.1},
        "dpn": {"m": 1.0, "p": 0.5},
        "csq": {"lam": 1e-4},
        "dtsh": {"margin": 5.0, "lam": 1.0},
        "dch": {"gamma": 20.0, "lam": 0.1},
        "dbdh": {"alpha": 0.1},
        "lcdsh": {"lam": 3.0},
    }
    for name, hyper in expect.items():
        loss = L.build(name, 8, 3, 10)
        for key, value in hyper.items():
            assert getattr(loss, key) == value, (name, key)


# ---------------------------------------------------------------- targets and centers
BITS = (8, 16, 32, 64, 128)


def test_sylvester_hadamard():
    h = T.hadamard(8)
    assert torch.equal(h @ h.T, 8 * torch.eye(8))
    assert torch.equal(T.hadamard(16)[5, :8], h[5]) and torch.equal(T.hadamard(16)[13, :8], h[5])
    with pytest.raises(ValueError, match="power of two"):
        T.hadamard(12)


def test_csq_single_length_matches_public_construction():
    h = T.hadamard(8)
    assert torch.equal(T.csq_centers(10, 8), torch.cat([h, -h])[:10])
    many = T.csq_centers(40, 8, T.make_generator(0))  # 2L < C: random balanced
    assert many.shape == (40, 8) and (many.sum(1) == 0).all()


def prefix_report(centers: torch.Tensor, bits: int) -> tuple[int, int]:
    """(number of distinct prefixes, largest number of classes sharing one) at length bits."""
    _, counts = torch.unique(centers[:, :bits], dim=0, return_counts=True)
    return counts.numel(), int(counts.max())


def test_nested_csq_centers_ten_classes():
    c = T.nested_csq_centers(10, BITS)
    assert c.shape == (10, 128)
    for bits in BITS:
        assert prefix_report(c, bits) == (10, 1)
        assert T.min_pairwise_hamming(c[:, :bits]) >= bits // 2
    assert T.min_pairwise_hamming(c) >= 64
    for bits in BITS[1:]:  # L >= C: orthogonal centers, every distance exactly L/2
        d = T.hamming_matrix(c[:, :bits])
        assert set(d[~torch.eye(10, dtype=torch.bool)].tolist()) == {bits // 2}


def test_nested_csq_centers_too_many_classes_for_short_prefixes():
    c = T.nested_csq_centers(100, BITS)
    for bits in BITS:
        distinct, worst = prefix_report(c, bits)
        if 2 * bits >= 100:
            assert (distinct, worst) == (100, 1)
            assert T.min_pairwise_hamming(c[:, :bits]) >= bits // 2
        else:  # 2L < C: all 2L centers used, none by more than ceil(C / 2L) classes
            assert distinct == 2 * bits and worst == math.ceil(100 / (2 * bits))


@settings(max_examples=30, deadline=None)
@given(
    st.integers(2, 256),
    st.sets(st.sampled_from([4, 8, 16, 32, 64, 128]), min_size=1, max_size=4),
)
def test_nested_csq_centers_guarantees(n_classes, lengths):
    bit_list = tuple(sorted(lengths))
    c = T.nested_csq_centers(n_classes, bit_list, T.make_generator(0))
    assert c.shape == (n_classes, bit_list[-1]) and set(c.unique().tolist()) <= {-1.0, 1.0}
    if 2 * bit_list[-1] < n_classes:  # random balanced blocks: every prefix balanced
        for bits in bit_list:
            assert (c[:, :bits].sum(1) == 0).all()
        return
    for bits in bit_list:
        distinct, worst = prefix_report(c, bits)
        if 2 * bits >= n_classes:
            assert distinct == n_classes and T.min_pairwise_hamming(c[:, :bits]) >= bits // 2
        else:
            assert worst <= math.ceil(n_classes / (2 * bits))


def test_nested_random_centers_for_non_power_of_two_lengths():
    bit_list = (12, 24, 48)
    c = T.nested_csq_centers(10, bit_list, T.make_generator(3))
    assert torch.equal(c, T.nested_csq_centers(10, bit_list, T.make_generator(3)))
    for bits in bit_list:
        assert (c[:, :bits].sum(1) == 0).all()  # each block holds half -1
    assert T.min_pairwise_hamming(c) > 0


def test_nested_dpn_targets_prefixes_balanced():
    t = T.nested_dpn_targets(7, (8, 16, 32), 0.5, T.make_generator(0))
    for bits in (8, 16, 32):
        assert ((t[:, :bits] == -1).sum(1) == bits // 2).all()
    t = T.nested_dpn_targets(5, (10, 20), 0.3, T.make_generator(0))
    assert ((t[:, :10] == -1).sum(1) == 3).all() and ((t == -1).sum(1) == 6).all()
    single = T.dpn_targets(5, 10, 0.3, T.make_generator(0))
    assert ((single == -1).sum(1) == 3).all()


def test_label_targets_multi_label_hand_example():
    centers = torch.tensor([[1.0, 1, 1, -1], [1, -1, -1, -1], [-1, -1, 1, 1]])
    tie = torch.tensor([-1.0, 1, -1, 1])
    y = torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 0]])
    expected = torch.tensor(
        [[1.0, 1, 1, -1], [1, 1, -1, -1], [1, -1, 1, -1], [-1, 1, -1, 1]]
    )  # sums: (2,0,0,-2) -> tie at bits 1, 2; (1,-1,1,-1); (0,0,0,0) -> tie
    assert torch.equal(T.label_targets(y, centers, tie), expected)


def test_multi_label_csq_and_dpn_use_tie_break():
    centers = torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, -1]])
    tie = torch.tensor([-1.0, -1, 1, 1])
    loss = L.build("dpn", 4, 2, 5, targets=centers, tie_break=tie)
    y = tens([[1.0, 1.0]])
    u = np.array([[0.3, -0.2, 0.5, 2.0]])
    t = np.array([1.0, -1, 1, 1])  # sum (2, 0, 2, 0): bits 1 and 3 from tie
    close(run(loss, u, y), float(np.mean(np.maximum(0, 1 - u * t))))
    csq = L.build("csq", 4, 2, 5, centers=centers, tie_break=tie)
    assert torch.equal(csq.targets_for(torch.tensor([[1.0, 1.0]])), torch.tensor(t[None]).float())


# ---------------------------------------------------------------- build_nested
@pytest.mark.parametrize("name,key", [("csq", "centers"), ("dpn", "targets")])
def test_build_nested_targets_are_prefixes(name, key):
    losses = L.build_nested(name, BITS, 10, 50, seed=4)
    assert [m.bits for m in losses] == list(BITS)
    longest = getattr(losses[-1], key)
    for m in losses:
        assert torch.equal(getattr(m, key), longest[:, : m.bits])
        assert torch.equal(m.tie_break, losses[-1].tie_break[: m.bits])
        if name == "csq":  # DPN's random 8-bit targets may coincide; CSQ's centers may not
            assert T.min_pairwise_hamming(m.centers) >= m.bits // 2


@pytest.mark.parametrize("name,key", [("csq", "centers"), ("dpn", "targets")])
def test_build_nested_independent_targets_contradict_prefixes(name, key):
    losses = L.build_nested(name, BITS, 10, 50, nested_targets=False, seed=4)
    mismatched = [
        not torch.equal(getattr(long, key)[:, : short.bits], getattr(short, key))
        for short, long in zip(losses[:-1], losses[1:])
    ]
    assert any(mismatched)
    if name == "csq":  # each length is the public per-length construction
        assert torch.equal(losses[0].centers, T.csq_centers(10, 8))


@pytest.mark.parametrize("nested", [True, False])
def test_build_nested_deterministic_from_seed(nested):
    def tensors(seed):
        losses = L.build_nested("dpn", (8, 16, 32), 5, 20, nested_targets=nested, seed=seed)
        return [t for m in losses for t in (m.targets, m.tie_break)]

    a, b, c = tensors(7), tensors(7), tensors(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_build_nested_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    L.build_nested("dpn", BITS, 10, 50)
    L.build_nested("csq", (12, 24), 30, 50, nested_targets=False)
    assert torch.equal(torch.rand(3), expected)


def test_build_nested_other_methods_and_explicit_targets():
    losses = L.build_nested("dsh", (8, 16), 3, 20, alpha=0.2)
    assert [(m.bits, m.m, m.alpha) for m in losses] == [(8, 16.0, 0.2), (16, 32.0, 0.2)]
    assert losses[0].bank is not losses[1].bank and losses[1].U.shape == (20, 16)
    full = T.nested_csq_centers(4, (8, 16))
    sliced = L.build_nested("csq", (8, 16), 4, 20, centers=full)
    assert torch.equal(sliced[0].centers, full[:, :8])
    with pytest.raises(ValueError, match="nested_targets=False"):
        L.build_nested("csq", (8, 16), 4, 20, nested_targets=False, centers=full)
    with pytest.raises(ValueError, match="16 columns"):
        L.build_nested("csq", (8, 16), 4, 20, centers=full[:, :8])
    with pytest.raises(ValueError, match="sorted"):
        L.build_nested("csq", (16, 8), 4, 20)


def test_nested_losses_train_on_nested_layer_outputs():
    from nhl.layer import NestedHashLayer

    layer = NestedHashLayer(6, (4, 8))
    losses = L.build_nested("csq", (4, 8), 3, 10)
    z = torch.randn(5, 6)
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0, 1]), 3).float()
    total = sum(f(h, y, torch.arange(5)) for f, h in zip(losses, layer(z)))
    total.backward()
    assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0


def test_spread_centres_use_their_length():
    spread = T.nested_csq_centers(10, BITS, design="hadamard")
    rows = T.nested_csq_centers(10, BITS, design="sylvester")
    # rows 0..9 of H_128: every bit after the 16th repeats one of the first 16
    assert T.distinct_splits(rows) == 16
    assert torch.equal(rows[:, 16:32], rows[:, :16])
    assert T.distinct_splits(spread) >= 64
    assert not torch.equal(spread[:, 16:32], spread[:, :16])
    assert torch.equal(T.nested_csq_centers(10, BITS), spread)  # the default


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 256), st.sets(st.sampled_from([4, 8, 16, 32, 64, 128]), min_size=1, max_size=5))
def test_spread_centres_keep_every_prefix_distance(n_classes, lengths):
    bit_list = tuple(sorted(lengths))
    if 2 * bit_list[-1] < n_classes:
        with pytest.raises(ValueError, match="design='random'"):
            T.nested_csq_centers(n_classes, bit_list, design="hadamard")
        return
    spread = T.nested_csq_centers(n_classes, bit_list, design="hadamard")
    rows = T.nested_csq_centers(n_classes, bit_list, design="sylvester")
    assert T.distinct_splits(spread) >= T.distinct_splits(rows)
    for bits in bit_list:
        assert prefix_report(spread[:, :bits], bits) == prefix_report(rows[:, :bits], bits)
        assert T.min_pairwise_hamming(spread[:, :bits]) == T.min_pairwise_hamming(rows[:, :bits])


def test_random_design_and_bad_design():
    c = T.nested_csq_centers(100, BITS, T.make_generator(0), design="random")
    for bits in BITS:
        assert (c[:, :bits].sum(1) == 0).all()
    assert prefix_report(c, 16)[0] == 100  # every class its own 16-bit centre
    with pytest.raises(ValueError, match="centre design"):
        T.nested_csq_centers(10, BITS, design="nope")
    with pytest.raises(ValueError, match="center_design"):
        L.build_nested("csq", BITS, 10, 20, center_design="nope")
    built = L.build_nested("csq", BITS, 10, 20, center_design="sylvester")
    assert torch.equal(built[-1].centers, T.nested_csq_centers(10, BITS, design="sylvester"))
