"""The source distribution builds on its own and tests itself: it carries every kernel source and header,
the CMake build of the C++ tests, the test suite and the scripts, benchmarks and docs the tests read
(without a MANIFEST.in setuptools packed only the .cpp files named in ext_modules, so an sdist install
failed on the first #include)."""
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tracked(*paths):
    out = subprocess.run(["git", "ls-files", *paths], cwd=ROOT, capture_output=True, text=True)
    return set(out.stdout.split()) if out.returncode == 0 else None


@pytest.mark.skipif(shutil.which("git") is None or not os.path.isdir(os.path.join(ROOT, ".git")),
                    reason="needs a git checkout to know the tracked files")
def test_sdist_holds_every_tracked_source_header_and_test(tmp_path):
    tracked = _tracked("csrc", "tests", "gkdfast", "scripts", "benchmarks", "docs", "README.md", "CMakeLists.txt",
                       "LICENSE", "pyproject.toml", "setup.py")
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)], cwd=ROOT, check=True,
                   capture_output=True, env={**os.environ, "GKDFAST_CUDA": "0"})
    (archive,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert tracked - names == set()
    assert not [n for n in names if n.endswith((".so", ".o", ".pyc"))]


def test_setup_names_the_setuptools_it_needs():
    """pyproject.toml's SPDX license needs setuptools >= 77; an older one printed a schema dump about
    `project.license`.  setup.py now stops first with the version found and the command that fixes it."""
    code = ("import runpy, sys, setuptools; setuptools.__version__ = '65.5.0'; sys.argv = ['setup.py', '--version']; "
            "runpy.run_path('setup.py', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "GKDFAST_CUDA": "0"})
    assert out.returncode != 0
    assert "needs setuptools >= 77 to build (found 65.5.0)" in out.stderr
    assert 'pip install -U "setuptools>=77"' in out.stderr
