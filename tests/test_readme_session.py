"""README's "A session" block runs and prints what README says it prints.

The block is run in a fresh interpreter (its first lines seed torch).  Words and integers must match
exactly; printed floats to two units of their last printed digit, since torch's matrix products round
differently across CPUs and thread counts (README, "Determinism").
"""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
NUMBER = re.compile(r"-?\d+\.\d+|-?\d+")


def _session():
    section = README.split("## A session", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    after = section.split("```python\n", 1)[1].split("```", 1)[1]
    assert after.lstrip().startswith("prints"), "README: the session block is followed by what it prints"
    printed = after.split("```text\n", 1)[1].split("```", 1)[0]
    return code, printed


def _numbers_close(got: str, want: str) -> bool:
    if "." not in want:
        return got == want
    step = 10.0 ** -len(want.split(".")[1])
    return abs(float(got) - float(want)) <= 2 * step


def test_readme_session_prints_what_readme_shows():
    code, printed = _session()
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env,
                         cwd=pathlib.Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr[-3000:]
    got, want = run.stdout.strip(), printed.strip()
    assert NUMBER.sub("#", got) == NUMBER.sub("#", want), f"printed:\n{got}\nREADME:\n{want}"
    pairs = list(zip(NUMBER.findall(got), NUMBER.findall(want)))
    bad = [(g, w) for g, w in pairs if not _numbers_close(g, w)]
    assert not bad, f"numbers that differ (printed, README): {bad}\nprinted:\n{got}"


def test_number_comparison_is_strict_enough():
    assert _numbers_close("0.1346", "0.1345") and not _numbers_close("0.1348", "0.1345")
    assert not _numbers_close("836", "835") and _numbers_close("19782", "19782")
