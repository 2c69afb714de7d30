import pytest
import torch

from nhl.distill import cascade_loss, similarity_matrix, sp_loss


def test_sp_is_zero_for_identical_and_scaled_inputs():
    h = torch.randn(6, 8)
    assert sp_loss(h, h).item() == 0
    assert sp_loss(h, 3 * h).item() == pytest.approx(0, abs=1e-12)  # row-normalised Gram


def test_sp_worked_example():
    hs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # G_s = I (rows already unit)
    ht = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # G_t = [[2,2],[2,2]] -> rows (1,1)/sqrt2
    expected = (2 * (1 - 2**-0.5) ** 2 + 2 * (2**-0.5) ** 2) / 4
    assert sp_loss(hs, ht).item() == pytest.approx(expected)
    assert torch.allclose(similarity_matrix(ht), torch.full((2, 2), 2**-0.5))


def test_cascade_adjacent_terms_and_teacher_detached():
    torch.manual_seed(0)
    h = torch.randn(5, 16, requires_grad=True)
    outs = [h[:, :4], h[:, :8], h[:, :16]]
    terms = cascade_loss(outs)
    assert len(terms) == 3 and terms[-1].item() == 0
    assert terms[0].item() == pytest.approx(sp_loss(outs[0], outs[1]).item())
    # the teacher (columns 4..7 of h only reachable through outs[1]) gets no gradient from term 0
    terms[0].backward()
    assert torch.all(h.grad[:, 4:] == 0) and h.grad[:, :4].abs().sum() > 0


def test_cascade_modes():
    torch.manual_seed(1)
    outs = [torch.randn(4, b) for b in (2, 4, 8)]
    longest = cascade_loss(outs, mode="longest")
    assert longest[0].item() == pytest.approx(sp_loss(outs[0], outs[2]).item())
    allp = cascade_loss(outs, mode="all_pairs")
    assert allp[0].item() == pytest.approx((sp_loss(outs[0], outs[1]) + sp_loss(outs[0], outs[2])).item())
    assert allp[1].item() == pytest.approx(sp_loss(outs[1], outs[2]).item())
    with pytest.raises(ValueError, match="adjacent, longest, all_pairs"):
        cascade_loss(outs, mode="pairs")


def test_teacher_not_detached_receives_gradient():
    h = torch.randn(5, 8, requires_grad=True)
    cascade_loss([h[:, :4], h], detach_teacher=False)[0].backward()
    assert h.grad[:, 4:].abs().sum() > 0


def test_batch_mismatch():
    with pytest.raises(ValueError, match="batch"):
        sp_loss(torch.randn(3, 2), torch.randn(4, 2))
