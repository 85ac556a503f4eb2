"""One mini-batch step of the out-of-core pipeline's MLP student (GLNN: cross-entropy on the labelled
rows + soft labels on every row) against the bare MLP step on the same number of in-memory rows.

Runner:  ``python benchmarks/bench_student_step.py [--out DIR] [--data FOLDER] [--epochs E]``
pytest:  ``pytest benchmarks/bench_student_step.py --benchmark-only``  (``GKDFAST_BENCH_SMALL=1``: tiny)

``gkdfast``: ``Distiller.fit`` of the ``glnn`` recipe for E epochs (default 1) on a graph, batches of
4,096 rows, MLP(128) with dropout 0.5, teacher logits random (their values do not change the work);
milliseconds per step, validation included, as the pipeline runs it.  ``bare MLP step``: forward,
cross-entropy + KL, backward and Adam step of the same MLP on 4,096 rows already in memory: what a
step costs without gathering rows, masks and teacher logits (the same batch sizes as the pipeline's,
its last partial batch included).  The ratio is the pipeline's time over the bare step's: its overhead
(those gathers, the validation pass, and the Distiller's set-up spread over the steps).

Graph: ``gkdfast.data.dcsbm`` with products' shape (average degree 50, 100 features, 47 classes),
200,000 nodes (5,000 with ``GKDFAST_BENCH_SMALL``), or ``--data``: a folder ``gkdfast generate`` or
``gkdfast.data.save_mmap`` wrote (memory-mapped, as the pipeline reads it).  Prints a table; writes
student_step.json and student_step.png under --out.
"""
from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

from gkdfast.distill import TeacherOutputs  # noqa: E402
from gkdfast.distill import recipes  # noqa: E402
from gkdfast.nn import MLP  # noqa: E402

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")
NUM_NODES = 5_000 if SMALL else 200_000
BATCH = 4_096
BARE = "bare MLP step"
HIDDEN = 128


def graph_data(path=None):
    if path:
        from gkdfast.data import load_mmap

        return load_mmap(path)
    from gkdfast.data import dcsbm

    return dcsbm(num_nodes=NUM_NODES, avg_degree=50.0, num_classes=47, feature_dim=100, seed=0)


def student(data) -> MLP:
    torch.manual_seed(0)
    return MLP(data.x.size(1), HIDDEN, data.num_classes, num_layers=2, dropout=0.5)


def teacher_logits(data) -> TeacherOutputs:
    g = torch.Generator().manual_seed(0)
    return TeacherOutputs(torch.randn(data.num_nodes, data.num_classes, generator=g) * 3, None)


def pipeline_epochs(data, teacher, epochs: int):
    """A closure that runs ``epochs`` epochs of the GLNN Distiller, and its step count."""
    steps = epochs * -(-data.num_nodes // BATCH)

    def run():
        recipe = recipes.get("glnn", batch_size=BATCH, epochs=epochs, patience=None)
        recipe.distiller(student(data), teacher, progress=False, seed=0).fit(data)

    return run, steps


def batch_sizes(num_nodes: int, epochs: int):
    """The pipeline's batch sizes: full batches of 4,096 rows and each epoch's last, partial one."""
    full, rest = divmod(num_nodes, BATCH)
    return ([BATCH] * full + ([rest] if rest else [])) * epochs


def bare_steps(data, sizes):
    """Forward/backward/Adam steps of the same MLP on in-memory rows, one per entry of ``sizes`` (the
    pipeline's batch sizes, so both sides do the same work)."""
    model = student(data)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, data.x.size(1), generator=g)
    y = torch.randint(0, data.num_classes, (BATCH,), generator=g)
    soft = torch.softmax(torch.randn(BATCH, data.num_classes, generator=g), -1)

    def run():
        for b in sizes:
            out = model(x[:b])
            loss = F.cross_entropy(out, y[:b]) + F.kl_div(F.log_softmax(out, -1), soft[:b], reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


def rows_for(data, epochs: int, repeats: int, max_seconds: float):
    import torch._dynamo  # noqa: F401  (the first Adam imports it: a one-time cost, not a step's)

    teacher = teacher_logits(data)
    run, steps = pipeline_epochs(data, teacher, epochs)
    rows = []
    size = f"N={data.num_nodes:,} batch={BATCH}"
    sizes = batch_sizes(data.num_nodes, epochs)
    for impl, fn in (("gkdfast", run), (BARE, bare_steps(data, sizes))):
        ms = _report.time_fn(fn, repeats=repeats, warmup=1, max_seconds=max_seconds) / steps
        rows.append(dict(size=size, case=f"step ({steps} steps)", impl=impl, ms=ms))
        print(f"  {size} {impl:<14} {ms:8.2f} ms / step")
    return _report.add_ratios(rows, baseline=BARE)  # the pipeline's row: its time / the bare step's


# ------------------------------------------------------------------------------------ pytest-benchmark
def test_bench_student_step(benchmark):
    data = graph_data()
    run, _ = pipeline_epochs(data, teacher_logits(data), 1)
    benchmark(run)


def main(argv=None) -> int:
    p = _report.runner_parser(__doc__, repeats=3, max_seconds=120.0)
    p.add_argument("--data", default=None, help="a memory-mappable graph folder (gkdfast generate --out)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per timed fit (default 1)")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    data = graph_data(args.data)
    print(f"student step, cpu ({torch.get_num_threads()} threads)")
    rows = rows_for(data, args.epochs, args.repeats, args.max_seconds)
    _report.report(rows, args.out, "student_step", "MLP student step (median ms per step)", device="cpu",
                   small=SMALL, table_title="\nratio = impl time / bare MLP step time (the pipeline's overhead)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
