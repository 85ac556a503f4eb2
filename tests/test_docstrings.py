"""Every ``>>>`` example in the package's docstrings runs and prints what it says.

Examples that read real data name it as ``../shared/data/...`` (the layout beside a checkout);
here that prefix is mapped onto ``$GKDFAST_DATA`` or ``../shared/data`` (``conftest.DATA_ROOT``), and a
module whose examples need data that is missing skips locally and fails under ``CI=true``.
Examples that need state a reader must supply (a trained model, a file of their own) carry
``# doctest: +SKIP``.
"""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import gkdfast
from conftest import DATA_ROOT, need_data

DATA_PREFIX = "../shared/data"


def _examples(mod, parser=None):
    finder = doctest.DocTestFinder() if parser is None else doctest.DocTestFinder(parser=parser)
    return [t for t in finder.find(mod) if t.examples]


def _modules_with_examples():
    names = ["gkdfast"]
    for info in pkgutil.walk_packages(gkdfast.__path__, "gkdfast."):
        if info.name.rsplit(".", 1)[-1] != "_C":  # the compiled extension has no Python docstrings
            names.append(info.name)
    return sorted(n for n in names if _examples(importlib.import_module(n)))


class _DataPathParser(doctest.DocTestParser):
    """Rewrites the documented data prefix to this machine's data root before parsing."""

    def __init__(self, root: str):
        super().__init__()
        self.root = root

    def parse(self, string, name="<string>"):
        return super().parse(string.replace(DATA_PREFIX, self.root), name)


MODULES = _modules_with_examples()


def test_the_public_modules_have_examples():
    for name in ("gkdfast.ops", "gkdfast.graph", "gkdfast.losses.structure", "gkdfast.losses.contrastive",
                 "gkdfast.data.loader", "gkdfast.distill.recipes", "gkdfast.distill.results", "gkdfast.nn.models"):
        assert name in MODULES


def test_every_public_function_has_an_example():
    # "Every public function has a docstring with shapes and an example": each function a public module
    # lists in __all__ and defines itself.
    import inspect

    missing = []
    for info in pkgutil.walk_packages(gkdfast.__path__, "gkdfast."):
        name = info.name
        if any(part.startswith("_") for part in name.split(".")[1:]):
            continue
        mod = importlib.import_module(name)
        for attr in getattr(mod, "__all__", []):
            obj = getattr(mod, attr, None)
            if inspect.isfunction(obj) and obj.__module__ == name and ">>>" not in (inspect.getdoc(obj) or ""):
                missing.append(f"{name}.{attr}")
    assert not missing, f"{len(missing)} public functions without an example: {missing}"


@pytest.mark.parametrize("mod_name", MODULES)
def test_docstring_examples_run(mod_name):
    mod = importlib.import_module(mod_name)
    tests = _examples(mod, _DataPathParser(DATA_ROOT))
    if any(DATA_ROOT in ex.source for t in tests for ex in t.examples):
        need_data()  # examples read real data: skip locally / fail under CI when it is missing
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    extraglobs = {"torch": torch, "gkdfast": gkdfast}
    for t in tests:
        t.globs.update({k: v for k, v in extraglobs.items() if k not in t.globs})
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{mod_name}: {result.failed} of {result.attempted} examples failed (output above)"
