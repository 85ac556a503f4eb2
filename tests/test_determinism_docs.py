"""The two CUDA paths that are not bitwise reproducible without torch.use_deterministic_algorithms(True)
(sampled-negative InfoNCE backward:
atomicAdd; spmm(norm="gcn") with edge weights: index_add_) are stated where users look: the
docstrings of the public functions that reach them and README's determinism section."""
import pathlib

import gkdfast

README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_docstrings_state_the_exceptions():
    assert "not bitwise reproducible" in gkdfast.losses.crd.__doc__
    assert "atomicAdd" in gkdfast.losses.crd.__doc__
    assert "not bitwise reproducible" in gkdfast.losses.ncontrast.__doc__
    assert "no sampled mode" in gkdfast.losses.nt_xent.__doc__
    spmm_doc = " ".join(gkdfast.spmm.__doc__.split())
    assert 'norm="gcn"`` **with edge weights on CUDA**' in spmm_doc and "index_add_" in spmm_doc
    assert "index_add_" in gkdfast.gcn_norm.__doc__


def test_readme_qualifies_its_reproducibility_claim():
    section = README.split("### Determinism", 1)[1].split("\n## ", 1)[0]
    for needle in ("num_negatives=K", "atomicAdd", 'norm="gcn"', "index_add_",
                   "torch.use_deterministic_algorithms(True)"):
        assert needle in section, needle
    # The table's "bitwise reproducible" claims point at the section.
    table_rows = [line for line in README.splitlines() if "bitwise reproducible" in line and line.startswith("|")]
    assert table_rows and all("(#determinism)" in line for line in table_rows)
