"""``load(path, format=None, name=None, seed=0)``: one entry point for every supported format."""
from __future__ import annotations

import glob
import os
import re
from typing import TYPE_CHECKING, Optional, Union

from gkdfast.data._util import PICK_ONE, fail, listing
from gkdfast.data.graphdata import GraphData

if TYPE_CHECKING:  # (imported when read: they pull in their readers)
    from gkdfast.data.tu import GraphDataset
    from gkdfast.hetero.graph import HeteroGraph

__all__ = ["load", "FORMATS", "guess_format"]

_SPLIT_FILE = re.compile(r"_split_[0-9.]+_[0-9.]+_[0-9]+\.npz$")  # Geom-GCN's <name>_split_0.6_0.2_<i>.npz

#: Canonical format names accepted by ``load(format=...)`` (aliases in ``_ALIASES``).
FORMATS = ("npz", "gnn-benchmark", "planetoid", "musae", "mat", "tu", "graph-json", "ogb", "mmap", "fair", "hetero")
_ALIASES = {"gnn_benchmark": "gnn-benchmark", "benchmark-npz": "gnn-benchmark", "matlab": "mat",
            "csv": "musae", "json": "musae", "tudataset": "tu", "ogbn": "ogb", "bundle": "npz",
            "memmap": "mmap", "fairness": "fair"}


def _norm_format(fmt: Optional[str]) -> Optional[str]:
    if fmt is None:
        return None
    f = str(fmt).strip().lower()
    f = _ALIASES.get(f, f)
    if f not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return f


def _pick_file(directory, pattern, name, what):
    files = sorted(glob.glob(os.path.join(directory, pattern)))
    if name is not None:
        stem = {os.path.splitext(os.path.basename(f))[0].lower(): f for f in files}
        if name.lower() in stem:
            return stem[name.lower()]
        raise fail(directory, f"no {what} named {name!r} (found {listing(sorted(stem))})")
    if len(files) == 1:
        return files[0]
    raise fail(directory, f"holds {len(files)} {what} files {listing(os.path.basename(f) for f in files)}; {PICK_ONE}"
               if files else f"no {what} file here")


def _subdir(directory, name):
    subs = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    exact = [d for d in subs if d.lower() in (name.lower(), "fair_" + name.lower())]
    if exact:
        return os.path.join(directory, exact[0])
    pre = [d for d in subs if d.lower().startswith(name.lower())]  # e.g. Twitch "EN" -> ENGB
    # Only where the folders are one collection's members: at a data root, "cora" is not "cora_ml"
    # (Cora lives in planetoid/), so a prefix among unrelated folders is no match.
    if len(pre) == 1 and _one_collection(directory, subs):
        return os.path.join(directory, pre[0])
    return None


def _holds_data(directory) -> bool:
    """Whether ``directory`` holds something :func:`load` reads, looking one level down only (a folder of
    split files, e.g. Twitch's ``linkx_splits``, is not offered as a dataset; an unreadable folder is)."""
    try:
        guess_format(directory, None, _listing=False)
    except ValueError as exc:
        return "no recognised graph files" not in str(exc) and "holds only split" not in str(exc)
    except OSError:
        return True
    return True


def _one_collection(directory, subs) -> bool:
    """Whether the sibling folders that hold graphs are one collection's members (Twitch's countries,
    HeCo's sets): all of one format (folders of other files, e.g. split files, do not count)."""
    formats = set()
    for d in subs:
        try:
            formats.add(guess_format(os.path.join(directory, d), _listing=False)[0])
        except (ValueError, OSError):
            pass
    return len(formats) == 1


def guess_format(path, name: Optional[str] = None, _listing: bool = True):
    """``(format, path, name)`` for ``path``: a file, a directory, or a Planetoid prefix
    ``dir/ind.cora``.  Raises ValueError when it cannot tell (``_listing``: whether that error lists the
    sub-folders that hold data, which looks one level further down).

    Example:
        >>> guess_format("../shared/data/planetoid/ind.cora")[0]
        'planetoid'
        >>> guess_format("../shared/data/blogcatalog/BlogCatalog.mat")[0]
        'mat'
    """
    from gkdfast.data.fairness import fairness_name
    from gkdfast.data.mmap import is_mmap_dir
    from gkdfast.hetero.readers import is_heco_dir, is_magnn_dir
    from gkdfast.data.musae import musae_prefixes
    from gkdfast.data.npz import npz_kind
    from gkdfast.data.ogb import is_ogb_dir
    from gkdfast.data.planetoid import planetoid_names
    from gkdfast.data.graph_json import is_graph_json_dir
    from gkdfast.data.tu import tu_names

    path = os.fspath(path)
    base = os.path.basename(os.path.normpath(path))
    parent = os.path.dirname(os.path.normpath(path)) or "."
    if not os.path.exists(path):
        if base.startswith("ind.") and os.path.exists(path + ".graph"):
            return "planetoid", parent, base.split(".")[1]
        raise fail(path, "no such file or directory")
    if os.path.isfile(path):
        low = base.lower()
        if low == "meta.json" and is_mmap_dir(parent):
            return "mmap", parent, name
        if low.endswith(".npz"):
            return npz_kind(path), path, name
        if low.endswith(".mat"):
            return "mat", path, name
        if low.startswith("ind.") and low.count(".") >= 2:
            return "planetoid", parent, base.split(".")[1]
        if fairness_name(parent):  # before MUSAE: fair_credit/train_edges.csv
            return "fair", parent, name
        if is_graph_json_dir(parent) and low in ("graphs.json", "target.csv"):  # before MUSAE: target.csv
            return "graph-json", parent, name
        for suf in ("edges.csv", "target.csv", "features.json", "features.csv"):
            if low.endswith(suf):
                return "musae", parent, name or (base[:-len(suf)] or None)
        for suf in ("_A.txt", "_graph_indicator.txt", "_graph_labels.txt", "_node_labels.txt",
                    "_node_attributes.txt", "_edge_labels.txt"):
            if base.endswith(suf):
                return "tu", parent, base[:-len(suf)]
        if low.endswith((".csv.gz", ".csv")) and os.path.basename(parent) == "raw":
            return "ogb", os.path.dirname(parent), name
        raise fail(path, "cannot tell the format from the file name; pass format= "
                         f"({', '.join(FORMATS)})")
    # A directory.
    if is_heco_dir(path) or is_magnn_dir(path):  # typed graphs: gkdfast.hetero.HeteroGraph
        return "hetero", path, name
    if is_mmap_dir(path):
        return "mmap", path, name
    if planetoid_names(path):
        return "planetoid", path, name
    if tu_names(path):
        return "tu", path, name
    if is_graph_json_dir(path):  # before MUSAE, whose folders also hold a target.csv
        return "graph-json", path, name
    if is_ogb_dir(path):
        return "ogb", path, name
    if fairness_name(path):  # before MUSAE: Credit's train_edges.csv looks like a MUSAE prefix
        return "fair", path, name
    if musae_prefixes(path):
        return "musae", path, name
    if name is not None:
        sub = _subdir(path, name)
        if sub is not None:
            return guess_format(sub, None)
    npzs = glob.glob(os.path.join(path, "*.npz"))
    mats = glob.glob(os.path.join(path, "*.mat"))
    if npzs and not mats and all(_SPLIT_FILE.search(os.path.basename(f)) for f in npzs):
        raise fail(path, f"holds only split files ({len(npzs)} like {os.path.basename(min(npzs))}), not a "
                         "graph: pass the graph as the data (e.g. the Planetoid folder with name='cora') and this "
                         "folder as the split files (gkdfast.data.with_split_files; gkdfast distill: --split-dir)")
    if npzs and not mats:
        f = _pick_file(path, "*.npz", name, ".npz")
        return npz_kind(f), f, name
    if mats and not npzs:
        return "mat", _pick_file(path, "*.mat", name, ".mat"), name
    if npzs or mats:
        if name is not None:
            for pat, what in (("*.npz", ".npz"), ("*.mat", ".mat")):
                try:
                    f = _pick_file(path, pat, name, what)
                except ValueError:
                    continue
                return (npz_kind(f) if f.endswith(".npz") else "mat"), f, name
        raise fail(path, f"holds several data files; {PICK_ONE}")
    subs = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if name is None and _listing:  # (the sub-folders a user may pick: those that hold data)
        subs = [d for d in subs if _holds_data(os.path.join(path, d))]
    if name is None and subs:
        raise fail(path, f"no graph files here; pick a sub-directory with name= (gkdfast distill: --name), one of "
                         f"{listing(subs)}")
    raise fail(path, "no recognised graph files (Planetoid ind.*, .npz, .mat, MUSAE *edges.csv, TU *_A.txt, "
                     "OGB raw/edge.csv.gz)" + (f" and no sub-directory {name!r}" if name else ""))


def load(path, format: Optional[str] = None, name: Optional[str] = None, seed: int = 0, **options
         ) -> Union[GraphData, "GraphDataset", "HeteroGraph"]:
    """Loads a graph from ``path``, guessing the format when ``format`` is None.

    Args:
        path: a file, a directory, or a Planetoid prefix (``.../planetoid/ind.cora``).
        format: one of ``npz`` (our bundle, see :func:`gkdfast.data.save_npz`; a gnn-benchmark file
            given as ``npz`` is recognised by its keys), ``gnn-benchmark``,
            ``planetoid``, ``musae``, ``mat``, ``tu``, ``ogb``, ``mmap`` (a directory written by
            :func:`gkdfast.data.save_mmap`, read memory-mapped), ``fair`` (German, Bail, Credit, Income,
            NBA: :func:`gkdfast.data.load_fairness`), ``graph-json`` (karateclub graph-classification
            folders such as Reddit threads: :func:`gkdfast.data.load_graph_json`); None = guess from the
            path and contents.
        name: picks one dataset where a directory holds several: ``name="cora"`` in the Planetoid
            folder, ``name="ENGB"`` (or the unique prefix ``"EN"``) in the Twitch folder,
            ``name="citeseer"`` for ``citeseer.npz`` in a folder of ``.npz`` files, a TU prefix...
        seed: seed of the random 20/30-per-class split used when the data has no split of its own
            (every format but Planetoid, OGB with ``split/``, and npz bundles with masks).
        options: reader-specific keywords: ``feature_dim`` (musae), ``scheme`` (ogb), ``target_type``
            and ``split`` (hetero: HeCo / MAGNN folders, read as a :class:`gkdfast.hetero.HeteroGraph`;
            ``split`` = HeCo's 20 / 40 / 60 labelled nodes per class).

    Returns:
        :class:`GraphData` for node classification; a :class:`gkdfast.data.GraphDataset` for
        the graph-classification ``tu`` and ``graph-json`` formats; a :class:`gkdfast.hetero.HeteroGraph`
        for ``hetero``.  ``extras["split"]`` says how the masks were made.

    Raises:
        ValueError: a one-line message naming the file and the problem (missing, malformed,
        inconsistent, ambiguous without ``name=``).

    Example:
        >>> from gkdfast.data import load
        >>> d = load("../shared/data/planetoid", name="cora")
        >>> d.num_nodes, d.num_classes, d.extras["split"]
        (2708, 7, 'public')
    """
    fmt = _norm_format(format)
    p = os.fspath(path)
    if fmt is None:
        fmt, p, name = guess_format(p, name)
    elif os.path.isdir(p) and fmt in ("npz", "gnn-benchmark", "mat"):
        p = _pick_file(p, "*.mat" if fmt == "mat" else "*.npz", name, "." + ("mat" if fmt == "mat" else "npz"))
    elif not os.path.exists(p) and fmt == "planetoid" and os.path.basename(p).startswith("ind."):
        name = os.path.basename(p).split(".")[1]
        p = os.path.dirname(p) or "."
    elif not os.path.exists(p):
        raise fail(p, "no such file or directory")
    elif os.path.isfile(p) and fmt in ("planetoid", "musae", "tu", "ogb"):
        g_fmt, g_p, g_name = guess_format(p, name)
        if g_fmt == fmt:
            p, name = g_p, g_name
        else:
            p = os.path.dirname(p)
    allowed = {"musae": {"feature_dim"}, "ogb": {"scheme"}, "hetero": {"target_type", "split"}}.get(fmt, set())
    bad = set(options) - allowed
    if bad:
        raise ValueError(f"load: option(s) {sorted(bad)} not accepted by format {fmt!r}")

    if fmt == "hetero":
        from gkdfast.hetero.readers import load_hetero
        if name and os.path.isdir(p):  # a folder of several sets (HeCo's): name picks one, as without format=
            g_fmt, g_p, _ = guess_format(p, name)
            p = g_p if g_fmt == "hetero" else p
        return load_hetero(p if os.path.isdir(p) else os.path.dirname(p), name=None, **options)
    if fmt == "fair":
        from gkdfast.data.fairness import load_fairness
        return load_fairness(p if os.path.isdir(p) else os.path.dirname(p), name=name, seed=seed)
    if fmt == "mmap":
        from gkdfast.data.mmap import load_mmap
        return load_mmap(p)
    if fmt == "npz":
        from gkdfast.data.npz import load_gnn_benchmark, load_npz_bundle, npz_kind
        # "--format npz" on a gnn-benchmark/APPNP file (Cora-ML) should just work.
        if npz_kind(p) == "gnn-benchmark":
            return load_gnn_benchmark(p, seed=seed, name=name)
        return load_npz_bundle(p, seed=seed, name=name)
    if fmt == "gnn-benchmark":
        from gkdfast.data.npz import load_gnn_benchmark
        return load_gnn_benchmark(p, seed=seed, name=name)
    if fmt == "planetoid":
        from gkdfast.data.planetoid import load_planetoid
        if os.path.isfile(p):
            p = os.path.dirname(p) or "."
        return load_planetoid(p, name)
    if fmt == "musae":
        from gkdfast.data.musae import load_musae
        if os.path.isdir(p) and name is not None and not _has_musae(p):
            sub = _subdir(p, name)
            if sub is not None:
                p, name = sub, None
        return load_musae(p, name=name, seed=seed, **options)
    if fmt == "mat":
        from gkdfast.data.matlab import load_mat
        return load_mat(p, seed=seed, name=name)
    if fmt == "tu":
        from gkdfast.data.tu import load_tu
        return load_tu(p, name=name, seed=seed)
    if fmt == "graph-json":
        from gkdfast.data.graph_json import load_graph_json
        return load_graph_json(p if os.path.isdir(p) else os.path.dirname(p), seed=seed)
    from gkdfast.data.ogb import load_ogb
    return load_ogb(p, name=name, seed=seed, **options)


def _has_musae(p):
    from gkdfast.data.musae import musae_prefixes
    return bool(musae_prefixes(p))
