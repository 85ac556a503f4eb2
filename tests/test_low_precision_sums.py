"""Losses whose final reduction or cancelling terms lost their value in a narrow dtype: kd and
relation(mode="gram") summed half rows past 65,504 before dividing (inf), HIRE's cross-similarity gap
cancelled three float32 Gram terms."""
import pytest
import torch

import gkdfast
from gkdfast.hetero.hire import cross_similarity_gap


@pytest.mark.parametrize("reduction", ["batchmean", "mean"])
def test_kd_half_mean_of_many_rows_is_finite(reduction):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(1000, 40, generator=g) * 10, torch.randn(1000, 40, generator=g) * 10
    exact = gkdfast.losses.kd(s, t, temperature=4.0, reduction=reduction)  # 70.5 for batchmean
    for dtype in (torch.float16, torch.bfloat16):
        out = gkdfast.losses.kd(s.to(dtype), t.to(dtype), temperature=4.0, reduction=reduction)
        assert out.dtype == dtype and torch.isfinite(out)
        torch.testing.assert_close(out.float(), exact, rtol=2e-2, atol=1e-3)


def test_relation_gram_half_many_rows_is_finite():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(7000, 32, generator=g)
    teacher = [base + 0.3 * torch.randn(7000, 32, generator=g) for _ in range(4)]
    student = [torch.randn(7000, 16, generator=g) for _ in range(4)]
    exact = gkdfast.losses.relation(student, teacher, mode="gram")
    out = gkdfast.losses.relation([b.half() for b in student], [b.half() for b in teacher], mode="gram")
    assert out.dtype == torch.float16 and torch.isfinite(out)
    torch.testing.assert_close(out.float(), exact, rtol=1e-2, atol=1e-3)


def test_cross_similarity_gap_float32_student_close_to_teacher():
    g = torch.Generator().manual_seed(0)
    t_a, t_b = torch.randn(2000, 32, generator=g, dtype=torch.float64), torch.randn(1500, 32, generator=g,
                                                                                      dtype=torch.float64)
    s_a = t_a + 1e-3 * torch.randn(2000, 32, generator=g, dtype=torch.float64)
    s_b = t_b + 1e-3 * torch.randn(1500, 32, generator=g, dtype=torch.float64)
    exact = cross_similarity_gap(s_a, s_b, t_a, t_b, normalize=False)
    # the same definition, dense: || s_a s_b^T - t_a t_b^T ||^2 / (n_a n_b), from the float32 inputs
    f = [v.float() for v in (s_a, s_b, t_a, t_b)]
    dense = ((f[0] @ f[1].T).double() - (f[2] @ f[3].T).double()).pow(2).mean()
    out = cross_similarity_gap(*f, normalize=False)
    assert out.dtype == torch.float32
    # the gap is ~7e-9 against Gram terms of ~1e3: float32 Gram terms gave a 24% error
    assert abs(out.item() - exact.item()) <= 1e-2 * exact.item() + abs(dense.item() - exact.item()), \
        (out.item(), exact.item(), dense.item())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_logits_are_computed_in_float32(dtype):
    """In half precision the log-ratio of two close distributions cancelled to noise: at temperature 100
    bf16 gave 41x the float32 value and fp16 a negative KL (helper 119)."""
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2000, 40, generator=g) * 3
    s = (t + 0.3 * torch.randn(2000, 40, generator=g)).to(dtype).requires_grad_()
    t = t.to(dtype)
    for temperature in (4.0, 100.0):
        value = gkdfast.losses.kd(s, t, temperature=temperature)
        assert value.dtype == dtype
        exact = gkdfast.losses.kd(s.double(), t.double(), temperature=temperature)
        assert abs(value.double() - exact).item() <= 0.01 * exact.item()
    (grad,) = torch.autograd.grad(gkdfast.losses.kd(s, t, temperature=4.0), s)
    s64 = s.detach().double().requires_grad_()
    (exact_grad,) = torch.autograd.grad(gkdfast.losses.kd(s64, t.double(), temperature=4.0), s64)
    assert grad.dtype == dtype
    rel = (grad.double() - exact_grad).norm() / exact_grad.norm()
    assert rel < 0.02, rel


def test_half_logits_with_a_tensor_temperature_match_a_float_one():
    """helper 121: a tensor temperature was rounded to the logits' bf16 (0.3 -> 0.30078125) before the
    float32 computation; a float one was not."""
    g = torch.Generator().manual_seed(0)
    s, t = (torch.randn(50, 7, generator=g) * 3).bfloat16(), (torch.randn(50, 7, generator=g) * 3).bfloat16()
    as_float = gkdfast.losses.kd(s, t, temperature=0.3)
    as_tensor = gkdfast.losses.kd(s, t, temperature=torch.tensor(0.3))
    assert torch.equal(as_float, as_tensor)
