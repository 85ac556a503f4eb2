"""scripts/device_check.sh and scripts/cuda_crash_probe.py, rehearsed on the CPU: a GPU lease is 15
minutes, so the script's wiring (steps, limits, files under $OUT, the summary) is checked here."""
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO, load_repo_script, need_data


def test_crash_probe_tells_a_raise_from_a_crash():
    probe = load_repo_script("scripts/cuda_crash_probe.py")
    ok = probe.run_case("cpu raise", "op.sample_neighbors(*csr(torch.int64, 'cpu'), torch.tensor([0, n]), 3, 0, 0)",
                        gdb=False)
    assert ok.startswith("cpu raise: raised IndexError"), ok
    crash = probe.run_case("segfault", f"import os; os.kill(os.getpid(), {int(signal.SIGSEGV)})", gdb=False)
    assert crash.startswith(f"segfault: CRASHED (exit {-int(signal.SIGSEGV)})"), crash


@pytest.mark.skipif(sys.platform != "linux", reason="bash + coreutils timeout")
def test_dry_run_writes_the_summary_and_the_comparison_under_out(tmp_path):
    out = tmp_path / "dc"
    env = dict(os.environ, DRY_RUN="1", OUT=str(out), PYTHON=sys.executable, TEST_PATHS="tests/test_pooling.py",
               DEADLINE="300", T_COMPARE="200", BENCH_MAX_SECONDS="1", OMP_NUM_THREADS="1", GKDFAST_COMMIT="abc123",
               GKDFAST_DATA=os.path.dirname(need_data("planetoid")))
    p = subprocess.run(["bash", "scripts/device_check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
    summary = (out / "summary.txt").read_text()
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "DRY_RUN: no CUDA build" in summary
    assert "import: compiled_with_cuda=" in summary
    assert "crash probe: ok" in summary
    assert "cuda tests:" in summary and "no final summary" not in summary
    assert "gpu compare: ok" in summary, summary
    assert json.loads((out / "compare.json").read_text())["rows"]  # written straight into $OUT
    assert (out / "summary.json").exists()
    assert "call cost: ok" in summary, summary
    assert "GAT(8x8) training epoch" in (out / "call_cost.log").read_text()
    assert "int32 spmm: ok" in summary and "int32 spmm weighted sum: ok" in summary, summary
    env_txt = (out / "env.txt").read_text()
    assert "commit abc123" in env_txt and "module pytest: yes" in env_txt
    assert os.path.exists(os.path.join(REPO, "gkdfast")) and any(
        f.startswith("_C") for f in os.listdir(os.path.join(REPO, "gkdfast")))  # the build was left alone
