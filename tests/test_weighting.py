import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nhl.weighting import (
    dominance_alphas,
    dominance_aware_weights,
    overlap_cosines,
    overlap_inner_products,
    weights_from_alphas,
)

BITS = (2, 4, 8)


def _grads(rows):
    """Stack per-length gradients given as lists of rows; pad to L_K = 8 rows of width 1."""
    g = torch.zeros(len(rows), 8, 1, dtype=torch.float64)
    for k, r in enumerate(rows):
        g[k, : len(r), 0] = torch.tensor(r, dtype=torch.float64)
    return g


def test_no_conflict_gives_all_ones():
    g = _grads([[1, 1], [1, 1, 1, 1], [1] * 8])
    assert torch.equal(dominance_aware_weights(g, BITS), torch.ones(3, dtype=torch.float64))


def test_known_conflict_gives_known_alphas_and_weights():
    # g_1 = (1, 0); g_2 = (-3, 0, 0, 0); g_3 = (0, ..., 0): c_12 = -3, tau_1 = ||g_1||^2 / 2 = 0.5
    g = _grads([[1, 0], [-3, 0, 0, 0], [0] * 8])
    a = dominance_alphas(g, BITS)
    assert a[0, 1].item() == pytest.approx(0.5 / 3)
    assert a[0, 2].item() == pytest.approx(0.5 / 3)  # no conflict (c_13 = 0) but capped by alpha_12
    assert a[1, 2].item() == 1.0
    raw = torch.tensor([1.0, 0.5 / 3, 0.5 / 3])  # w_2 = alpha_12, w_3 = alpha_13 * alpha_23
    w = dominance_aware_weights(g, BITS)
    assert torch.allclose(w.float(), 3 * raw / raw.sum())
    assert w.sum().item() == pytest.approx(3.0)


def test_small_conflict_below_threshold_is_left_alone():
    g = _grads([[1, 0], [-0.4, 0, 5, 5], [0] * 8])  # -c_12 = 0.4 < tau_1 = 0.5
    assert dominance_alphas(g, BITS)[0, 1].item() == 1.0


def test_only_overlap_rows_count():
    # g_2 and g_3 conflict only on rows 3..4, which g_1 does not share
    g = _grads([[1, 1], [0, 0, 1, 1], [0, 0, -5, -5, 0, 0, 0, 0]])
    c = overlap_inner_products(g, BITS)
    assert c[0, 1] == 0 and c[0, 2] == 0 and c[1, 2] == -10
    a = dominance_alphas(g, BITS)
    assert a[0, 1] == 1 and a[0, 2] == 1 and a[1, 2].item() == pytest.approx((2 / 2) / 10)


def test_shortest_norm_variant_uses_the_8_bit_norm():
    g = _grads([[0.1, 0], [10, 0, 0, 0], [-40, 0, 0, 0, 0, 0, 0, 0]])
    # c_23 = -400; own: tau_2 = 100 / 2 = 50 -> alpha = 0.125; shortest: tau = 0.01 / 2
    assert dominance_alphas(g, BITS, norm="own")[1, 2].item() == pytest.approx(50 / 400)
    assert dominance_alphas(g, BITS, norm="shortest")[1, 2].item() == pytest.approx(0.005 / 400)
    with pytest.raises(ValueError, match="own, shortest"):
        dominance_alphas(g, BITS, norm="longest")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=8 * 3, max_size=8 * 3),
    st.floats(0.0, 1.0),
)
def test_dominance_property_holds(values, beta):
    g = torch.tensor(values, dtype=torch.float64).reshape(3, 8, 1)
    for k, b in enumerate(BITS):
        g[k, b:] = 0
    a = dominance_alphas(g, BITS, beta=beta)
    for i, li in enumerate(BITS):
        gi = g[i, :li].flatten()
        adjusted = gi + sum(a[i, j] * g[j, :li].flatten() for j in range(i + 1, 3))
        assert gi @ adjusted >= (1 - beta) * (gi @ gi) - 1e-9
    w = weights_from_alphas(a)
    assert w.sum().item() == pytest.approx(3.0)
    assert torch.all(w >= 0)


def test_single_length_and_shape_errors():
    assert dominance_aware_weights(torch.randn(1, 8, 3), (8,)).tolist() == [1.0]
    with pytest.raises(ValueError, match="one gradient per length"):
        dominance_aware_weights(torch.randn(2, 8, 3), BITS)
    with pytest.raises(ValueError, match="L_K = 8 rows"):
        dominance_aware_weights(torch.randn(3, 6, 3), BITS)


def test_overlap_cosines():
    g = _grads([[1, 0], [1, 1, 0, 0], [-1, 0, 0, 0, 0, 0, 0, 1]])
    cos = overlap_cosines(g, BITS)
    assert torch.allclose(torch.diagonal(cos), torch.ones(3, dtype=torch.float64))
    assert cos[0, 1].item() == pytest.approx(1 / 2**0.5)
    assert cos[0, 2].item() == pytest.approx(-1.0)
    assert cos[1, 2].item() == pytest.approx(-1 / 2**0.5)
    assert torch.allclose(cos, cos.T)
