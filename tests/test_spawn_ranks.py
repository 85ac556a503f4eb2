"""How the distributed tests' ranks end: a process group that torch keeps referenced outlives
``destroy_process_group`` (importing gkdfast releases it), and a rank that dies by a signal
prints its Python stack."""
import os
import signal
import subprocess
import sys

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from _spawn_ranks import spawn_ranks

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)

# torch.distributed.nn.functional imported after init_process_group (DistributedDataParallel's
# constructor does it) pins the group in its functions' default arguments.
_SCRIPT = """
import sys, torch, torch.distributed as dist
sys.path[:0] = [{tests!r}, {root!r}]
from _spawn_ranks import gloo_threads
dist.init_process_group("gloo", init_method="file://" + sys.argv[2], rank=0, world_size=1)
if sys.argv[1] == "ddp-first":
    torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
import torch.distributed.nn.functional
if sys.argv[1] != "plain":
    import gkdfast.distill.ddp
dist.all_reduce(torch.ones(2))
assert gloo_threads(), "expected a live gloo group"
dist.destroy_process_group()
print(gloo_threads())
"""


@pytest.mark.skipif(not dist.is_available() or not os.path.isdir("/proc/self/task"),
                    reason="needs torch.distributed and /proc (Linux)")
@pytest.mark.parametrize("order,left", [("plain", True), ("gkdfast", False), ("ddp-first", False)])
def test_importing_gkdfast_releases_the_group_torch_would_keep(tmp_path, order, left):
    """plain torch: the group's gloo threads outlive destroy_process_group (the rare abort at exit);
    gkdfast.distill.ddp imported after init, or after a DDP was built, gives the group back."""
    code = _SCRIPT.format(tests=TESTS, root=ROOT)
    r = subprocess.run([sys.executable, "-c", code, order, str(tmp_path / "init")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    threads = r.stdout.strip().splitlines()[-1]
    if order == "plain" and threads == "[]":
        pytest.skip("this torch no longer pins the default group: nothing left for gkdfast to release")
    assert (threads != "[]") == left, threads


def _always_abort(rank: int, out_dir: str):
    os.kill(os.getpid(), signal.SIGABRT)


def test_a_rank_killed_by_a_signal_fails_with_its_stack(tmp_path, capfd):
    with pytest.raises(mp.ProcessExitedException, match="SIGABRT"):
        spawn_ranks(_always_abort, 1, str(tmp_path), lambda init, out: (out,))
    err = capfd.readouterr().err
    assert "Fatal Python error: Aborted" in err and "_always_abort" in err
