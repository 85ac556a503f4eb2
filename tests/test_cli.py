"""The ``gkdfast`` command: distill end to end (results.json schema, PNG, resume), and bad input:
exit code 2, one line on stderr, never a traceback."""
import json
import os

import numpy as np
import pytest

from conftest import run_cli

_cli = run_cli


def _assert_clean_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and "error" in lines[0]
    for n in needles:
        assert n in lines[0], lines[0]


def test_distill_end_to_end_schema_png_and_resume(tmp_path):
    out = str(tmp_path / "res")
    args = ("distill", "--nodes", "500", "--seeds", "2", "--epochs", "20", "--student", "mlp:16",
            "--teacher", "gcn:16", "--methods", "glnn,kd", "--out", out, "--quiet")
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert "teacher" in r.stdout and "glnn" in r.stdout
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    assert set(res) == {"dataset", "num_nodes", "num_edges", "rows"}
    assert res["dataset"] == "csbm" and res["num_nodes"] == 500 and isinstance(res["num_edges"], int)
    assert [(row["method"], row["model"]) for row in res["rows"]] == [
        ("teacher", "GCN(16)"), ("none", "MLP(16)"), ("glnn", "MLP(16)"), ("kd", "MLP(16)")]
    for row in res["rows"]:
        assert set(row) == {"method", "model", "test_acc_mean", "test_acc_std", "test_acc", "train_seconds",
                            "inference_ms_per_1k_nodes"}
        assert len(row["test_acc"]) == 2 and all(0.0 <= a <= 1.0 for a in row["test_acc"])
        assert abs(row["test_acc_mean"] - sum(row["test_acc"]) / 2) < 1e-12
        assert row["train_seconds"] > 0 and row["inference_ms_per_1k_nodes"] > 0
    assert res["rows"][0]["test_acc_mean"] > 0.5  # the GCN teacher on the CSBM: far above chance (0.2)
    assert os.path.getsize(os.path.join(out, "results.png")) > 1000
    # Same command again: every run is resumed from its finished checkpoint, same accuracies.
    r2 = _cli(*args)
    assert r2.returncode == 0, r2.stderr
    with open(os.path.join(out, "results.json")) as f:
        res2 = json.load(f)
    assert [row["test_acc"] for row in res2["rows"]] == [row["test_acc"] for row in res["rows"]]


@pytest.mark.parametrize("args,needle", [
    (("distill", "--seeds", "0"), "--seeds"),
    (("distill", "--seeds", "two"), "--seeds"),
    (("distill", "--methods", "glnn,nope"), "nope"),
    (("distill", "--student", "transformer"), "transformer"),
    (("distill", "--teacher", "sage:x"), "sage:x"),
    (("distill", "--data", "/definitely/not/here"), "/definitely/not/here"),
    (("distill", "--set", "glnn.lamda=0.1"), "lamda"),
    (("distill", "--set", "oops"), "METHOD.PARAM=VALUE"),
    (("distill", "--dropout", "1.5"), "--dropout"),
    (("distill", "--epochs", "0"), "--epochs"),
    (("distill", "--nodes", "100"), "--nodes"),
    (("distill", "--setting", "semi"), "--setting"),
    (("distill", "--inductive-fraction", "1.5"), "--inductive-fraction"),
    (("distill", "--seed", "-1"), "--seed"),
    (("distill", "--format", "npz"), "--data"),
    (("distill", "--unknown-flag"), "--unknown-flag"),
    (("distill", "--methods", "glnn", "--set", "kd.temperature=4"), "kd is not among the methods"),
    (("distill", "--sampled", "--student", "mlp,gcn"), "trains one student"),
    (("condense", "--ratio", "0.05", "--nodes", "600", "--data", "/definitely/not/here"), "--nodes sizes the built-in"),
    (("bench", "--dir", "/definitely/not/here"), "benchmark"),
    (("bench", "--size", "huge"), "--size"),
    (("bench", "--only", "nope"), "nope"),
    (("bench", "--only", ""), "--only is empty"),  # (an unset shell variable used to run every runner)
    (("frobnicate",), "frobnicate"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, needle, capsys):
    # In-process (the same main() the console script runs) to keep the suite fast; the subprocess
    # tests below check the real interpreter prints no traceback.
    from gkdfast.cli import main

    try:
        rc = main(list(args))
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err

    class R:
        returncode, stderr, stdout = rc, err, ""

    _assert_clean_error(R, needle)


def test_bad_argument_in_a_real_process():
    _assert_clean_error(_cli("distill", "--methods", "glnn,nope"), "nope")


def test_malformed_data_files_give_one_line_and_exit_2(tmp_path):
    garbage = tmp_path / "broken.npz"
    garbage.write_bytes(b"this is not a zip archive")
    _assert_clean_error(_cli("distill", "--data", str(garbage), "--format", "npz"), "broken.npz")
    # A valid npz bundle missing the labels.
    partial = tmp_path / "partial.npz"
    np.savez(partial, edge_index=np.array([[0, 1], [1, 0]], dtype=np.int64), x=np.ones((2, 3), np.float32))
    _assert_clean_error(_cli("distill", "--data", str(partial), "--format", "npz"))
    # Edge index out of range.
    bad_edges = tmp_path / "edges.npz"
    np.savez(bad_edges, edge_index=np.array([[0, 7], [1, 0]], dtype=np.int64), x=np.ones((2, 3), np.float32),
             y=np.array([0, 1], dtype=np.int64))
    _assert_clean_error(_cli("distill", "--data", str(bad_edges), "--format", "npz"))
    # An empty directory is not a dataset.
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_clean_error(_cli("distill", "--data", str(empty)))


def test_help_lists_the_subcommands():
    r = _cli("--help")
    assert r.returncode == 0
    for sub in ("info", "distill", "bench"):
        assert sub in r.stdout
    r = _cli("distill", "--help")
    assert r.returncode == 0 and "--methods" in r.stdout and "glnn" in r.stdout


# -- real data and our own bundle -------------------------------------------------------------------
from conftest import need_data as _need  # noqa: E402


def _results(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def test_distill_on_real_planetoid_folder_with_name(tmp_path):
    folder = _need("planetoid")
    out = str(tmp_path / "cora")
    r = _cli("distill", "--data", folder, "--name", "cora", "--teacher", "gcn:16", "--methods", "glnn",
             "--seeds", "1", "--epochs", "3", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    res = _results(out)
    assert res["num_nodes"] == 2708 and res["num_edges"] == 2 * 5278  # directed: each edge both ways
    # The default student with --data is the MLP alone.
    assert [(row["method"], row["model"]) for row in res["rows"]] == [
        ("teacher", "GCN(16)"), ("none", "MLP(128)"), ("glnn", "MLP(128)")]
    # Without --name the folder is ambiguous: a one-line error naming the flag.
    _assert_clean_error(_cli("distill", "--data", folder, "--quiet"), "--name")


def test_distill_on_npz_bundle_guessed_and_explicit_with_and_without_masks(tmp_path):
    from gkdfast.data import csbm, save_npz

    data = csbm(num_nodes=500, seed=3)
    with_masks = tmp_path / "with_masks.npz"
    save_npz(data, with_masks)
    no_masks = tmp_path / "no_masks.npz"
    np.savez(no_masks, edge_index=data.graph.edge_index.numpy(), x=data.x.numpy(), y=data.y.numpy())
    common = ("--teacher", "gcn:16", "--student", "mlp:16", "--methods", "kd", "--epochs", "2", "--quiet")
    for path, fmt in ((with_masks, ()), (with_masks, ("--format", "npz")), (no_masks, ())):
        out = str(tmp_path / f"out-{path.stem}-{len(fmt)}")
        r = _cli("distill", "--data", str(path), *fmt, "--seeds", "2", "--seed", "5", "--out", out, *common)
        assert r.returncode == 0, r.stderr
        res = _results(out)
        assert res["num_nodes"] == 500 and len(res["rows"]) == 3
        assert all(len(row["test_acc"]) == 2 for row in res["rows"])
    # The checkpoints are per seed: --seed 5 --seeds 2 ran seeds 5 and 6.
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["seed5", "seed6"]


def test_distill_refuses_graph_classification_data():
    folder = _need("tu_mutag")
    _assert_clean_error(_cli("distill", "--data", folder), "graph-classification")


def test_distill_inductive_setting(tmp_path):
    out = str(tmp_path / "ind")
    r = _cli("distill", "--nodes", "500", "--setting", "inductive", "--teacher", "gcn:16", "--student", "mlp:16",
             "--methods", "glnn", "--seeds", "1", "--epochs", "3", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "inductive setting: 20% of the test nodes" in r.stderr
    with open(os.path.join(out, "results-inductive-0.2.json")) as f:
        res = json.load(f)
    assert res["dataset"] == "csbm [inductive 20%]"
    assert [row["method"] for row in res["rows"]] == ["teacher", "none", "glnn"]
    assert os.path.isdir(os.path.join(out, "checkpoints-inductive-0.2"))
    assert not os.path.exists(os.path.join(out, "results.json"))  # a transductive run's file stays its own


def test_teacher_free_methods_train_no_teacher_unless_one_is_named(tmp_path):
    base = ("distill", "--nodes", "500", "--student", "gcn:16", "--methods", "freekd", "--seeds", "1",
            "--epochs", "2")
    r = _cli(*base, "--out", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    assert "no teacher: every method is teacher-free" in r.stderr
    with open(tmp_path / "a" / "results.json") as f:
        assert [row["method"] for row in json.load(f)["rows"]] == ["none", "freekd"]
    r = _cli(*base, "--teacher", "gcn:16", "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "b" / "results.json") as f:
        assert [row["method"] for row in json.load(f)["rows"]] == ["teacher", "none", "freekd"]


def test_dropout_reaches_the_common_protocols_students_and_defaults_to_one_half(monkeypatch, tmp_path):
    import argparse

    import gkdfast.distill.experiment as experiment
    from gkdfast.cli import STUDENT_DROPOUT, main, student_dropout

    assert student_dropout(argparse.Namespace(dropout=None)) == STUDENT_DROPOUT == 0.5
    assert student_dropout(argparse.Namespace(dropout=0.0)) == 0.0
    seen = []

    def fake_run(data, *, students, **kw):
        seen.extend(s.dropout for s in students)
        raise SystemExit(0)  # the students were built from the flags: nothing to train here

    monkeypatch.setattr(experiment, "run_experiment", fake_run)
    with pytest.raises(SystemExit):
        main(["distill", "--nodes", "500", "--student", "mlp,gcn:16", "--dropout", "0.2", "--quiet",
              "--out", str(tmp_path / "o")])
    assert seen == [0.2, 0.2]


def test_set_values_true_false_none_in_any_case_and_text_refused_before_training(capsys):
    from gkdfast.cli import _parse_set, main

    assert _parse_set(["ta_ensemble.include_teacher=false", "a.b=TRUE", "a.c=none", "a.d=Null", "a.e=1e-3"]) == {
        "ta_ensemble": {"include_teacher": False}, "a": {"b": True, "c": None, "d": None, "e": 1e-3}}
    for bad, msg in (("glnn.lamb=flase", "lamb takes a float"), ("ta_ensemble.include_teacher=1",
                                                                  "include_teacher takes True or False")):
        assert main(["distill", "--methods", "glnn,ta_ensemble", "--set", bad, "--epochs", "1", "--quiet"]) == 2
        assert msg in capsys.readouterr().err  # refused before the teacher trained


def test_cli_refuses_duplicates_and_flags_that_would_do_nothing(tmp_path, capsys):
    from gkdfast.cli import main

    base = ["distill", "--epochs", "1", "--quiet", "--out", str(tmp_path / "o")]
    cases = ((["--methods", "kd,hinton"], "the same recipe (kd)"),
             (["--inductive-fraction", "0.5"], "--inductive-fraction: only with --setting inductive"),
             (["--nodes", "600", "--data", _need("planetoid"), "--name", "cora"], "--nodes: the size of the built-in"))
    for extra, msg in cases:
        assert main(base + extra) == 2
        assert msg in capsys.readouterr().err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU message")
def test_graph_task_on_cuda_without_a_gpu_is_a_one_line_error(capsys):
    from gkdfast.cli import main

    assert main(["distill", "--task", "graph", "--data", _need("tu_mutag"), "--device", "cuda", "--quiet"]) == 2
    assert "--device cuda: no CUDA device is available" in capsys.readouterr().err


def test_a_ctrl_c_that_torch_save_turned_into_a_runtime_error_is_still_an_interrupt(monkeypatch, capsys):
    # torch.save raises RuntimeError("... unexpected pos ...") when a KeyboardInterrupt hits its write;
    # the command said "error" and exited 1 instead of "interrupted" and 130
    import gkdfast.cli as cli

    def run(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos")

    monkeypatch.setattr(cli, "_distill", run)
    assert cli.main(["distill", "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_sigterm_stops_a_run_like_ctrl_c_with_one_line_and_its_clean_ups(tmp_path):
    """A batch system's cancel (SIGTERM) used to kill the command silently, leaving half-written
    temporaries behind; now it is raised where the program is, as Ctrl-C is: the finally blocks run, one
    line says so, exit 143; the default handler is back afterwards."""
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import os, signal, sys, time\n"
        "import gkdfast.cli as cli\n"
        "tmp = sys.argv[1]\n"
        "def run(args):\n"
        "    open(tmp, 'w').close()\n"
        "    try:\n"
        "        time.sleep(60)\n"
        "    finally:\n"
        "        os.remove(tmp)  # a clean-up a silent death would skip\n"
        "cli._distill = run\n"
        "rc = cli.main(['distill', '--quiet'])\n"
        "assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL\n"
        "sys.exit(rc)\n")
    marker = tmp_path / "running"
    p = subprocess.Popen([sys.executable, "-c", code, str(marker)], stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    for _ in range(600):
        if marker.exists():
            break
        time.sleep(0.05)
    assert marker.exists(), p.communicate(timeout=60)[1]
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 143, err
    assert err.strip().splitlines() == ["gkdfast distill: terminated (SIGTERM) (rerun the same command to resume)"]
    assert not marker.exists()


def test_hetero_students_are_checked_before_the_teacher_trains(capsys):
    from gkdfast.cli import main

    data = _need("hetero_imdb_magnn")
    assert main(["distill", "--data", data, "--student", "rgcn:16,rgcn:16", "--quiet", "--epochs", "1"]) == 2
    assert "same model twice" in capsys.readouterr().err
    assert main(["distill", "--data", data, "--student", "mlp", "--quiet", "--epochs", "1"]) == 2
    assert "unknown heterogeneous model 'mlp'" in capsys.readouterr().err


def test_python_dash_m_gkdfast_is_the_command():
    import subprocess
    import sys

    from conftest import REPO
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-m", "gkdfast", "info"], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == run_cli("info").stdout


def test_closed_stdout_stops_quietly():
    # `gkdfast info | head -1` printed "gkdfast info: error: [Errno 32] Broken pipe"
    import subprocess
    import sys

    from conftest import REPO
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "gkdfast", "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=REPO)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_a_broken_pipe_that_is_not_stdout_is_an_error(monkeypatch, capsys):
    # only a closed stdout ends quietly; a pipe to a subprocess or socket breaking is reported
    from gkdfast import cli

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_cmd_info", broken)
    assert cli.main(["info"]) == 1  # an OSError of the machine's, not of an argument (exit 1, as ENOSPC)
    assert "gkdfast info: error:" in capsys.readouterr().err


def test_bench_finds_runners_only_in_a_gkdfast_checkout(tmp_path, monkeypatch, capsys):
    """An installed package's parent is site-packages: a top-level benchmarks/ there is another project's,
    and its bench_*.py must not run."""
    from gkdfast import cli

    assert cli._is_gkdfast_checkout(os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__))))
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "bench_other.py").write_text("raise SystemExit('ran another project')\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\n')
    assert not cli._is_gkdfast_checkout(str(tmp_path))
    assert not cli._is_gkdfast_checkout(str(tmp_path / "missing"))
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "gkdfast" / "cli.py"))
    assert cli.main(["bench", "--only", "other", "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "needs a source checkout of gkdfast" in err and "ran another project" not in err
