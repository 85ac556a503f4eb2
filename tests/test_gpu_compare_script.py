"""benchmarks/gpu_compare.py (the device script's comparison step) runs end to end on the CPU at
tiny sizes and writes the summary schema issue 13 asks for; the GPU run only changes the sizes."""
import json

import pytest

from conftest import load_repo_script
REQUIRED = {"case", "gkdfast_ms", "peer", "peer_ms", "ratio", "tf32"}
CASES = {"spmm_sum_fwd", "spmm_sum_fwdbwd", "spmm_mean_fwdbwd", "spmm_max_fwdbwd", "lsp_rbf_4M", "gsp_rbf_kl_10k",
         "gsp_rbf_kl_100k", "crd_alln_32k", "ncontrast_gram_32k"}


def _load():
    return load_repo_script("benchmarks/gpu_compare.py")


def test_small_cpu_run_writes_the_summary(tmp_path, capsys):
    mod = _load()
    assert mod.main(["--device", "cpu", "--small", "--out", str(tmp_path), "--repeats", "1",
                     "--max-seconds", "1"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {e["case"] for e in summary} == CASES
    for e in summary:
        assert REQUIRED <= set(e)
        assert e["tf32"] is False and e["gkdfast_ms"] > 0 and e["legacy_ms"] > 0
        if e["peer"] is not None:
            assert e["peer_ms"] > 0 and e["ratio"] == pytest.approx(e["peer_ms"] / e["gkdfast_ms"])
    rows = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert any(r["case"] == "matmul" and r["tflops"] > 0 for r in rows)
    assert "gkdfast ms" in capsys.readouterr().out  # the table is printed last
