"""pytest-benchmark configuration for benchmarks/ (never part of the test run: testpaths = tests).

Run:  ``pytest benchmarks/ --benchmark-only``  (``GKDFAST_BENCH_SMALL=1`` for tiny smoke sizes).
Files named ``bench_*.py`` are collected here, in addition to the usual ``test_*.py``.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # `import _peers`, `import _report`

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")


def pytest_collect_file(file_path, parent):
    # Files given explicitly on the command line are collected by pytest itself; don't double them.
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "big: full-size benchmark (skipped with GKDFAST_BENCH_SMALL=1)")
