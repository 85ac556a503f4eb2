"""Where float32 loses GSP-KL's teacher gradient: a dense emulation of the tile kernels' per-pair
formula (csrc/common/gsp_tile_math.h, pair_coef) on the duplicate-student-rows case of
tests/test_gsp_tiled_cpu.py, against float64.

    python scripts/gsp_kl_precision.py

Each variant rounds the kernel values K / tau to float32, as the kernels do, then forms
``p_t (log p_t - log p_s - KL)`` one way:
  lse      the kernels' float32 path: log p = x - lse, the row's log-sum-exp stored in float32, KL
           from the forward (float64 over the float32 logits);
  lse-bkl  the same, KL summed from the backward's own float32 terms;
  split    the row's maximum (one of its float32 logits, exact) and log-sum stored apart, KL from
           the forward;
  f64-diff the same float32 logits, every difference after them in float64.
Also the raw float32 kernel (torch.ops.gkdfast.gsp_tiled, which gkdfast.losses.gsp no longer runs for
float32 KL) and the dense float32 reference (PyTorch autograd).  Prints the teacher gradient's error,
max |error| / max |exact|.  Findings in docs/losses.md ("Precision").
"""
import torch

import gkdfast  # noqa: F401  (registers the ops)
from gkdfast.reference import structure as ref


def case():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(10, 16, generator=g) * 2
    s = base.repeat_interleave(20, 0)  # 10 groups of 20 identical student rows
    t = base.repeat_interleave(20, 0) * 1.3 + 0.3 * torch.randn(200, 16, generator=g)
    return s, t


def emulated_teacher_grad(s, t, tau, mode):
    """d loss / d t for the poly kernel, loss = mean over rows of KL(p_t || p_s)."""
    s32, t32 = s.float(), t.float()
    gs, gt = s32 @ s32.T, t32 @ t32.T
    xs, xt = (gs + 1) ** 2 / tau, (gt + 1) ** 2 / tau  # float32 logits, as the kernels round them
    lse = lambda x: torch.logsumexp(x.double(), 1, keepdim=True)  # noqa: E731  (accumulated in float64)
    if mode == "f64-diff":
        ls, lt = xs.double() - lse(xs), xt.double() - lse(xt)
    elif mode.startswith("lse"):
        ls, lt = xs - lse(xs).float(), xt - lse(xt).float()
    else:  # split: (x - max) - log(sum exp(x - max)), each part in float32
        ms, mt = xs.max(1, keepdim=True).values, xt.max(1, keepdim=True).values
        ls = (xs - ms) - lse(xs - ms).float()
        lt = (xt - mt) - lse(xt - mt).float()
    pt = lt.exp()
    if mode == "lse-bkl":  # summed (in float64) from the very terms below
        kl = (pt.double() * (lt - ls).double()).sum(1, keepdim=True).to(lt.dtype)
    else:  # the forward's: exact over the float32 logits, rounded to the stored dtype
        fs, ft = xs.double() - lse(xs), xt.double() - lse(xt)
        kl = (ft.exp() * (ft - fs)).sum(1, keepdim=True).to(lt.dtype)
    ct = (pt * ((lt - ls) - kl)).double() / tau / s.size(0)  # d loss / d K^T_ab (row a's term)
    c = ct + ct.T
    return (c * 2 * (gt.double() + 1)) @ t.double()  # d K_ab / d t_a = 2 (t_a.t_b + 1) t_b (poly)


def exact_teacher_grad(s, t, tau, fn):
    sd, td = s.double(), t.double().requires_grad_()
    return torch.autograd.grad(fn(sd, td, tau), td)[0]


def main():
    s, t = case()
    dense = lambda a, b, tau: ref.gsp(a, b, "poly", "kl", tau, 1.0)  # noqa: E731
    raw = lambda a, b, tau: torch.ops.gkdfast.gsp_tiled(a, b, "poly", "kl", 1.0, tau)[0].sum() / a.size(0)  # noqa: E731
    err = lambda got, x: ((got.double() - x).abs().max() / x.abs().max()).item()  # noqa: E731
    print("poly kernel, teacher gradient: max |error| / max |exact| against float64")
    modes = ("lse", "lse-bkl", "split", "f64-diff")
    print(f"{'tau':>5} | " + " ".join(f"{m:>9}" for m in modes) + f" | {'kernel32':>9} {'dense32':>9}")
    for tau in (0.5, 0.05):
        exact = exact_teacher_grad(s, t, tau, dense)
        row = [err(emulated_teacher_grad(s, t, tau, m), exact) for m in modes]
        for fn in (raw, dense):
            t32 = t.clone().requires_grad_()
            row.append(err(torch.autograd.grad(fn(s, t32, tau), t32)[0], exact))
        print(f"{tau:>5} | " + " ".join(f"{v:9.2e}" for v in row[:4]) + " | " + " ".join(f"{v:9.2e}" for v in row[4:]))


if __name__ == "__main__":
    main()
