"""Logit distillation (Hinton et al., 2015)."""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor

from gkdfast._autocast import float32_loss, wide_sum
from gkdfast._checks import finite_number

_REDUCTIONS = ("batchmean", "mean", "sum", "none")


@float32_loss
def kd(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0,
       reduction: str = "batchmean") -> Tensor:
    """Soft-label distillation: ``T^2 * KL(softmax(t/T) || softmax(s/T))`` per row.

    Args:
        student_logits: ``[N, C]``.  teacher_logits: ``[N, C]`` (no gradient is needed for it, but
            it is respected if present).
        temperature: ``T > 0``.
        reduction: ``"batchmean"`` (sum / N), ``"mean"`` (sum / (N*C)), ``"sum"``, or ``"none"`` (``[N]``).

    Example:
        >>> s, t = torch.randn(4, 3), torch.randn(4, 3)
        >>> gkdfast.losses.kd(s, t, temperature=2.0).shape
        torch.Size([])
    """
    for name, t in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(t, Tensor):
            raise TypeError(f"gkdfast.losses.kd: {name} must be a tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"gkdfast.losses.kd: {name} must be 2-D [N, C], got shape {list(t.shape)}")
        if not t.is_floating_point():  # (integer one-hot labels are not logits: softmax of them means nothing)
            raise TypeError(f"gkdfast.losses.kd: {name} must be floating-point logits, got {t.dtype}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"gkdfast.losses.kd: student_logits has shape {list(student_logits.shape)} but "
                         f"teacher_logits has {list(teacher_logits.shape)} (the same [N, C] for both)")
    if student_logits.device != teacher_logits.device:
        raise ValueError(f"gkdfast.losses.kd: student_logits is on {student_logits.device}, teacher_logits on "
                         f"{teacher_logits.device}")
    # A one-element tensor (e.g. a learnable nn.Parameter) is checked by its value (a host read) and used
    # as it is, so its gradient flows; a number, also a symbolic one under torch.compile, as a number.
    value = float(temperature.detach()) if isinstance(temperature, Tensor) and temperature.numel() == 1 else temperature
    if not (finite_number(value) and value > 0):
        raise ValueError(f"gkdfast.losses.kd: temperature must be a finite number > 0, got {temperature}")
    # float16 / bfloat16 logits are computed in float32 and the result cast back (as the other losses'
    # references do): in half precision the log-ratio of two close distributions cancels to noise, e.g.
    # at temperature 100 bf16 gave 41x the float32 value and fp16 a negative KL (helper 119).  A tensor
    # temperature joins them in float32 unrounded (rounded to bf16 first, 0.3 became 0.30078125).
    compute_dtype = torch.float32 if student_logits.dtype in (torch.float16, torch.bfloat16) else student_logits.dtype
    if isinstance(temperature, Tensor):  # a scalar of the compute dtype and device: no broadcast, no promotion
        temperature = temperature.reshape(()).to(device=student_logits.device, dtype=compute_dtype)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"gkdfast.losses.kd: unknown reduction {reduction!r}; expected one of {', '.join(_REDUCTIONS)}")
    out_dtype = student_logits.dtype
    student_logits = student_logits.to(compute_dtype)
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.to(student_logits.dtype) / temperature, dim=-1)
    # A class the teacher rules out (logit -inf, e.g. masked) has p_t = 0 and adds nothing: 0·log 0 = 0,
    # computed without the 0·(-inf) that would make the row NaN (and its gradients).
    p_t = log_p_t.exp()
    kept = p_t != 0  # (a NaN teacher row stays NaN: it is not a masked class)
    log_ratio = torch.where(kept, log_p_t, torch.zeros_like(log_p_t)) - log_p_s
    per_row = torch.where(kept, p_t * log_ratio, torch.zeros_like(p_t)).sum(-1) * temperature**2
    if reduction == "none":
        return per_row.to(out_dtype)
    total = wide_sum(per_row)  # half rows in float32: 1,000 rows of KL 70 pass 65,504 before the mean
    if reduction == "sum":
        return total.to(out_dtype)
    count = student_logits.numel() if reduction == "mean" else student_logits.size(0)
    return (total / max(count, 1)).to(out_dtype)
