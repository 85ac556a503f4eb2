"""The command under a batch system: stderr and stdout to files, no terminal, maybe a non-UTF-8 locale
(README, "gkdfast distill"): logs without carriage returns, results saved whatever happens to stdout,
exit statuses a wrapper can act on."""
from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from gkdfast import _progress, cli

SMALL_RUN = ["distill", "--nodes", "500", "--seeds", "1", "--epochs", "5", "--student", "mlp:16", "--teacher",
             "gcn:16", "--methods", "kd"]


def test_a_bar_in_a_log_writes_lines_not_carriage_returns(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    default = _progress.progress_bar(total=1, file=io.StringIO())
    # both intervals: tqdm's monitor thread would otherwise force a line every 10 s of a slow bar
    assert default.mininterval == default.maxinterval == _progress.LOG_INTERVAL == 30.0
    default.close()
    monkeypatch.setattr(_progress, "LOG_INTERVAL", 0.0)
    log = io.StringIO()  # not a terminal
    bar = _progress.progress_bar(total=3, desc="demo", leave=False, dynamic_ncols=True, file=log)
    for i in range(3):
        bar.update(1)
        bar.set_postfix(loss=f"{i}", refresh=False)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("demo:   0%") and any("3/3" in line for line in lines), text
    quiet = io.StringIO()
    assert list(_progress.progress_bar(range(3), enabled=False, file=quiet)) == [0, 1, 2]
    monkeypatch.setenv("TQDM_DISABLE", "1")
    _progress.progress_bar(range(3), file=quiet).close()
    assert quiet.getvalue() == ""


def test_a_run_logged_to_files_under_an_ascii_locale(tmp_path):
    # Before: 4,644 carriage-return redraws in 200 s of stderr, glued in front of the "seed ..." lines;
    # and under an ASCII stdout the finished run ended in UnicodeEncodeError ('±'), exit 2, no results.
    env = dict(os.environ, PYTHONIOENCODING="ascii", PYTHONUTF8="0", OMP_NUM_THREADS="1",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TQDM_DISABLE", None)
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "gkdfast", *SMALL_RUN, "--out", str(out)], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "\r" not in res.stderr
    assert [line.split()[:3] for line in res.stderr.splitlines() if line.startswith("seed 0  ")] == [
        ["seed", "0", "teacher"], ["seed", "0", "none"], ["seed", "0", "kd"]]
    assert "+-" in res.stdout and "teacher" in res.stdout
    assert json.loads((out / "results.json").read_text())["rows"][0]["method"] == "teacher"
    helped = subprocess.run([sys.executable, "-m", "gkdfast", "distill", "--help"], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=120)
    assert helped.returncode == 0 and "dSP" in helped.stdout, helped.stderr  # (its ΔSP, spelled out)


def test_results_are_saved_before_the_table_is_printed(tmp_path, monkeypatch):
    from gkdfast.distill import results

    def unprintable(*args, **kwargs):
        raise UnicodeEncodeError("ascii", "±", 0, 1, "ordinal not in range(128)")

    monkeypatch.setattr(results, "format_table", unprintable)
    out = tmp_path / "run"
    assert cli.main([*SMALL_RUN, "--out", str(out), "--quiet"]) == 2
    assert (out / "results.json").exists() and (out / "results.png").exists()


def test_exit_statuses(monkeypatch, capsys):
    assert cli.main([]) == 2  # `gkdfast` alone (an empty variable in a script) is a usage error
    assert "usage:" in capsys.readouterr().err

    def disk_full(args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli, "_cmd_info", disk_full)
    assert cli.main(["info"]) == 1  # the machine's, not the arguments': a batch system may retry
    assert "gkdfast info: error: OSError:" in capsys.readouterr().err

    def no_such_file(args):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "data.npz")

    monkeypatch.setattr(cli, "_cmd_info", no_such_file)
    assert cli.main(["info"]) == 2
    monkeypatch.setenv("GKDFAST_DEBUG", "0")  # off, as the other GKDFAST_ switches read 0
    assert cli.main(["info"]) == 2
    monkeypatch.setenv("GKDFAST_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        cli.main(["info"])


def test_a_users_once_per_location_warning_stays_once_beside_a_sparse_input_model():
    # Before: the sparse-input path entered warnings.catch_warnings() on every forward, which resets
    # every module's warning registry: a warning in the user's loop came back on each of 5 steps.
    code = """
import warnings, torch, gkdfast
torch.manual_seed(0)
x = (torch.rand(200, 100) < 0.02).float()  # < 5 % non-zeros: the sparse CSR product
mlp = gkdfast.nn.MLP(100, 8, 3)
for step in range(5):
    mlp(x).sum().backward()
    warnings.warn("the user's own warning", UserWarning)
"""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("the user's own warning") == 1, res.stderr
    assert "beta state" not in res.stderr and "implicitly disabled" not in res.stderr


def test_an_unusable_cache_dir_is_refused_before_the_teacher_trains(tmp_path, capsys):
    # Before: the run trained its teacher, then failed writing its outputs.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = cli.main([*SMALL_RUN, "--out", str(tmp_path / "run"), "--cache-dir", str(blocker / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and "--cache-dir" in err and "cannot create it" in err
    assert "teacher GCN" not in err  # nothing trained
