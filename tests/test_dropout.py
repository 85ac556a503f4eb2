"""Counter-based dropout (torch.ops.gkdfast.dropout, gkdfast.nn.Dropout) against its pure-PyTorch
reference: the same mask bit for bit on CPU and CUDA, the keep rate, gradients (the same mask,
re-drawn), seeding from torch's generator, opcheck, compile, bad arguments."""
import math
import os
import subprocess
import sys

import pytest
import torch

import gkdfast
from gkdfast import _backend
from gkdfast.nn.philox_dropout import draw_seed, dropout
from gkdfast.reference import dropout as ref

native = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")

SHAPES = [(7,), (3, 5), (257, 129), (0, 4), (2, 3, 11)]  # tails of a 128-element group, empty, 3-D


@native
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_equals_reference_bit_for_bit(shape, p, dtype, device):
    x = torch.randn(shape, dtype=dtype).to(device)
    seed = 0x1234_5678_9ABC_DEF0 - (1 << 63)  # a negative int64: the key is its 64 bits
    got = torch.ops.gkdfast.dropout(x, p, seed)
    want = ref.dropout(x.cpu(), p, seed)
    assert got.shape == x.shape and got.dtype == dtype
    assert torch.equal(got.cpu(), want)


@native
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_types_match_reference(dtype):
    x = torch.randn(33, 65, dtype=dtype)
    torch.testing.assert_close(torch.ops.gkdfast.dropout(x.cuda(), 0.3, 5).cpu(), ref.dropout(x, 0.3, 5),
                               rtol=0, atol=0)


@native
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_half_types_match_reference(dtype):
    x = torch.randn(33, 65, dtype=dtype)
    assert torch.equal(torch.ops.gkdfast.dropout(x, 0.3, 5), ref.dropout(x, 0.3, 5))


def test_keep_rate_and_scale():
    x = torch.ones(200_000)
    for p in (0.05, 0.5, 0.8):
        out = dropout(x, p, seed=3)
        kept = out != 0
        # binomial std of the kept fraction is sqrt(p (1 - p) / n) < 0.0012; 6 sigma
        assert abs(kept.float().mean().item() - (1 - p)) < 0.007
        assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / (1 - p)))


def test_reference_words_match_the_scalar_philox():
    from gkdfast.reference.contrastive import philox4x32_10

    seed = 987654321987
    keep = ref.dropout_keep(12, 0.5, seed)
    for e in range(12):
        block = e // 4
        word = philox4x32_10((block, 0, 0, ref.DROPOUT_DOMAIN), (seed & 0xFFFFFFFF, seed >> 32))[e % 4]
        assert bool(keep[e]) == (word >= math.floor(0.5 * 2 ** 32))


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_gradient_is_the_same_mask(backend, monkeypatch):
    monkeypatch.setenv("GKDFAST_BACKEND", backend)
    x = torch.randn(40, 17, dtype=torch.float64, requires_grad=True)
    g = torch.randn(40, 17, dtype=torch.float64)
    out = dropout(x, 0.4, seed=11)
    (gx,) = torch.autograd.grad((out * g).sum(), (x,))
    keep = ref.dropout_keep(x.numel(), 0.4, 11).view(x.shape)
    factor = torch.where(keep, torch.tensor(1 / 0.6, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    torch.testing.assert_close(out, x.detach() * factor, rtol=0, atol=0)
    torch.testing.assert_close(gx, g * factor, rtol=0, atol=0)


def test_gradcheck_and_gradgradcheck():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    fn = lambda v: dropout(v, 0.3, seed=2)  # noqa: E731
    torch.autograd.gradcheck(fn, (x,))
    torch.autograd.gradgradcheck(fn, (x,))


@native
def test_opcheck():
    x = torch.randn(9, 13, requires_grad=True)
    torch.library.opcheck(torch.ops.gkdfast.dropout.default, (x, 0.25, 42))
    torch.library.opcheck(torch.ops.gkdfast.dropout.default, (x.detach().t(), 0.5, -7))  # non-contiguous input


@native
def test_compile_fullgraph_matches_eager():
    x = torch.randn(20, 8, requires_grad=True)
    fn = torch.compile(lambda v: dropout(v, 0.5, seed=9).square().sum(), fullgraph=True)
    (g1,) = torch.autograd.grad(fn(x), (x,))
    (g2,) = torch.autograd.grad(dropout(x, 0.5, seed=9).square().sum(), (x,))
    torch.testing.assert_close(g1, g2)


def test_seed_comes_from_torch_generator_and_mask_depends_on_it():
    x = torch.ones(1000)
    torch.manual_seed(5)
    a = dropout(x, 0.5)
    b = dropout(x, 0.5)
    torch.manual_seed(5)
    assert torch.equal(a, dropout(x, 0.5))
    assert not torch.equal(a, b)
    g = torch.Generator().manual_seed(1)
    assert draw_seed(g) == draw_seed(torch.Generator().manual_seed(1))


def test_seed_taken_modulo_2_64():
    x = torch.randn(50)
    assert torch.equal(dropout(x, 0.5, seed=-1), dropout(x, 0.5, seed=(1 << 64) - 1))
    assert torch.equal(dropout(x, 0.5, seed=3), dropout(x, 0.5, seed=3 + (1 << 64)))


def test_eval_mode_and_p_zero_return_the_input():
    x = torch.randn(4, 4)
    assert dropout(x, 0.5, training=False) is x and dropout(x, 0.0) is x
    m = gkdfast.nn.Dropout(0.3)
    assert m.eval()(x) is x and "p=0.3" in repr(m)
    m.train()
    out = m(x)
    assert ((out == 0) | torch.isclose(out, x / 0.7)).all()


def test_p_one_and_dropped_nan_behave_like_torch():
    x = torch.tensor([1.0, -2.0, float("nan"), float("inf")])
    torch.testing.assert_close(dropout(x, 1.0, seed=0), torch.nn.functional.dropout(x, 1.0), equal_nan=True)
    y = torch.full((64,), float("nan"))
    assert torch.isnan(dropout(y, 0.5, seed=0)).all()  # NaN * 0 is NaN, as in torch's dropout


def test_thread_count_does_not_change_the_mask():
    x = torch.randn(300, 301)
    before = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            torch.set_num_threads(t)
            outs.append(dropout(x, 0.5, seed=77))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0], outs[1])


def _cpu_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx2 " in f.read().replace("\n", " ")
    except OSError:
        return False


def _run_with_words(source: str, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GKDFAST_CPU_PHILOX": source}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


@native
@pytest.mark.parametrize("source", ["generic", "avx2"])
def test_both_cpu_word_sources_equal_the_reference(source):
    """The CPU kernel takes its Philox words from hand-written AVX2 code (on AVX2 machines without
    AVX-512, by default) or from compiler-vectorised rounds; GKDFAST_CPU_PHILOX forces one (read
    once per process, so each runs in its own).  Each checks full groups, tails and every dtype, and
    that the words it asked for are the ones used."""
    if source == "avx2" and not _cpu_has_avx2():
        pytest.skip("this CPU has no AVX2")
    code = f"""if True:
        import torch, gkdfast
        from gkdfast import _C
        from gkdfast.reference import dropout as ref
        assert _C.cpu_dropout_words() == {source!r}, _C.cpu_dropout_words()
        seed = 0x0123_4567_89AB_CDEF
        for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            for shape in ((4096, 128), (257, 129), (5,)):
                x = torch.randn(shape).to(dtype)
                for p in (0.1, 0.5, 0.9):
                    assert torch.equal(torch.ops.gkdfast.dropout(x, p, seed), ref.dropout(x, p, seed)), (dtype, shape, p)
        print("ok")
    """
    run = _run_with_words(source, code)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


@native
def test_unknown_word_source_is_one_clear_error():
    code = """if True:
        import torch, gkdfast
        try:
            torch.ops.gkdfast.dropout(torch.ones(300), 0.5, 1)
        except RuntimeError as e:
            print(str(e).splitlines()[0])
    """
    run = _run_with_words("avx512", code)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "GKDFAST_CPU_PHILOX must be 'avx2', 'generic' or unset, got 'avx512'" in run.stdout


def test_bad_arguments():
    with pytest.raises(ValueError, match="p must be in"):
        dropout(torch.ones(3), 1.5)
    with pytest.raises(ValueError, match="p must be in"):
        dropout(torch.ones(3), float("nan"))
    with pytest.raises(TypeError, match="floating"):
        dropout(torch.ones(3, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match="p must be in"):
        gkdfast.nn.Dropout(-0.1)
    if _backend.native_loaded():
        with pytest.raises(ValueError, match="gkdfast.dropout: p must be in"):
            torch.ops.gkdfast.dropout(torch.ones(3), 2.0, 0)
        with pytest.raises(TypeError, match="gkdfast.dropout: x must be floating"):
            torch.ops.gkdfast.dropout(torch.ones(3, dtype=torch.int32), 0.5, 0)
