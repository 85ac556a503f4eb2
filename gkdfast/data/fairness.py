"""Readers for the five fairness graphs: German, Recidivism (Bail), Credit, Income, NBA.

Each returns a :class:`GraphData` with a binary ``sensitive`` attribute (``[N]`` int64 in {0, 1}).
The column recipes follow the loaders the fair-GNN literature uses (NIFTY for German, Bail, Credit;
the Income repository's ``load_income``; FairGNN's columns for NBA, split the NIFTY way below):

==========  ==============================  ===================  ========================  =========
name        files                           label                sensitive (1 = ...)       features
==========  ==============================  ===================  ========================  =========
german      german.csv, german_edges.txt    GoodCustomer (-1→0)  Gender (Female)           27
bail        bail.zip (read in place)        RECID                WHITE                     18
credit      credit.csv, {train,val,test}    NoDefaultNextMonth   Age                       13
            _edges.csv (concatenated)
income      income.csv, income_edges.txt    income               race                      13
nba         nba.csv, nba_relationship.txt   SALARY (-1 = none)   country                   95
==========  ==============================  ===================  ========================  =========

Features are every other column except the ones the recipe drops (German: ``OtherLoansAtStore``,
``PurposeOfLoan``; Credit: ``Single``; Income: ``race``; NBA: ``user_id``, ``country``), each scaled to [-1, 1]
by its min and max (NIFTY's ``feature_norm``; a constant column becomes 0).  The sensitive column
stays among the features for German, Bail and Credit (not for Income and NBA).
Edges are symmetrised, de-duplicated, self-loops dropped.

Split (``extras["split"] = "fair(...)"``, re-drawn per seed by the experiment runner): per class,
shuffled by ``seed``; the first half of each class is the training pool, of which at most
``label_number // 2`` nodes are kept, the third quarter is validation, the last quarter test
(the NIFTY split; ``label_number`` = 100 for German and Bail, 6000 for Credit, 1000 for Income and
NBA).
"""
from __future__ import annotations

import os
import zipfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from gkdfast.data._util import (PICK_ONE, check_edge_range, check_zip_members, csv_rows, fail, listing,
                                parse_int_table, undirected_graph)
from gkdfast.data.graphdata import GraphData

__all__ = ["load_fairness", "fairness_name", "fairness_split", "FAIRNESS_SETS", "check_sensitive"]

# name -> (label column, sensitive column, dropped columns, label_number, code of string values)
_SPECS: Dict[str, dict] = {
    "german": dict(label="GoodCustomer", sensitive="Gender", drop=("OtherLoansAtStore", "PurposeOfLoan"),
                   label_number=100, codes={"Gender": {"Female": 1, "Male": 0}}, label_map={-1: 0, 1: 1}),
    "bail": dict(label="RECID", sensitive="WHITE", drop=(), label_number=100),
    "credit": dict(label="NoDefaultNextMonth", sensitive="Age", drop=("Single",), label_number=6000),
    "income": dict(label="income", sensitive="race", drop=("race",), label_number=1000),
    "nba": dict(label="SALARY", sensitive="country", drop=("user_id", "country"), label_number=1000),
}
#: Names :func:`load_fairness` reads.
FAIRNESS_SETS = tuple(_SPECS)

# The file whose presence identifies each layout in a folder.
_MARKERS = {"german": "german.csv", "bail": "bail.zip", "credit": "credit.csv", "income": "income.csv",
            "nba": "nba.csv"}


def fairness_name(directory) -> Optional[str]:
    """The fairness set stored in ``directory`` (``"bail"``, ...) or None.

    Example:
        >>> fairness_name("../shared/data/fair_bail")
        'bail'
    """
    found = [n for n, f in _MARKERS.items() if os.path.isfile(os.path.join(os.fspath(directory), f))]
    return found[0] if len(found) == 1 else None


def fairness_split(y: torch.Tensor, label_number: int, seed: int = 0):
    """NIFTY's split: per class, the first half (after a seeded shuffle) is the training pool, of
    which ``label_number // 2`` are kept; the third quarter is validation, the last quarter test.

    Args:
        y: ``[N]`` int64 labels (``-1`` = unlabelled, in no mask).  label_number: training nodes in all.
        seed: the draw depends only on ``seed`` and ``y``.

    Returns:
        ``(train_mask, val_mask, test_mask)``, ``[N]`` bool each, disjoint.

    Example:
        >>> tr, va, te = fairness_split(torch.arange(400) % 2, 100, seed=0)
        >>> int(tr.sum()), int(va.sum()), int(te.sum())
        (100, 100, 100)
    """
    if label_number < 2:
        raise ValueError(f"fairness_split: label_number must be >= 2, got {label_number}")
    yc = y.detach().to("cpu", torch.int64)
    n = yc.numel()
    gen = torch.Generator().manual_seed(int(seed))
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    for c in range(int(yc.max()) + 1 if n else 0):
        idx = (yc == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        k = idx.numel()
        masks[0][idx[:min(k // 2, label_number // 2)]] = True
        masks[1][idx[k // 2:(3 * k) // 4]] = True
        masks[2][idx[(3 * k) // 4:]] = True
    return tuple(m.to(y.device) for m in masks)


def check_sensitive(path, values: np.ndarray, column: str) -> np.ndarray:
    """``values`` as int64 in {0, 1}; a one-line error naming ``path`` when it has other values, or only
    one of them (every node in one group: ΔSP and ΔEO would read as 100 % bias).

    Example:
        >>> check_sensitive("x.csv", np.array([0.0, 1.0, 1.0]), "s").tolist()
        [0, 1, 1]
    """
    vals = np.unique(values)
    if vals.size > 2 or not np.isin(vals, (0, 1)).all():
        shown = listing(v.item() if hasattr(v, "item") else v for v in vals)
        raise fail(path, f"sensitive attribute {column!r} has {vals.size} values {shown}; fairness metrics need a "
                         "binary attribute: map it to 0/1 (e.g. majority group 0, the rest 1) before loading")
    if vals.size < 2:
        raise fail(path, f"sensitive attribute {column!r} has the single value {listing(v.item() for v in vals)} "
                         "(or no rows); fairness metrics compare two groups, so both 0 and 1 must occur")
    return values.astype(np.int64)


def _read_csv(path, text: str) -> Tuple[List[str], List[List[str]]]:
    rows = csv_rows(path, text)
    if not rows:
        raise fail(path, "empty table")
    header, body = rows[0], [r for r in rows[1:] if r]
    if not body:
        raise fail(path, "empty table: a header and no rows")
    bad = next((i for i, r in enumerate(body) if len(r) != len(header)), None)
    if bad is not None:
        raise fail(path, f"row {bad + 2} has {len(body[bad])} fields, the header has {len(header)}")
    return header, body


def _column_index(path, header, name) -> int:
    if name not in header:
        raise fail(path, f"no column {name!r} (columns: {listing(header)})")
    return header.index(name)


def _id_column(path, header, body, name) -> np.ndarray:
    """An integer id column, exact in int64: Twitter ids run past 2**53, where float64 merges neighbours."""
    j = _column_index(path, header, name)
    return parse_int_table(path, " ".join(r[j] for r in body), 1, f"column {name!r}", first_line=None).reshape(-1)


def _column(path, header, body, name, codes=None) -> np.ndarray:
    j = _column_index(path, header, name)
    raw = [r[j] for r in body]
    if codes is not None:
        try:
            return np.array([codes[v] for v in raw], dtype=np.float64)
        except KeyError as exc:
            raise fail(path, f"column {name!r} has value {exc.args[0]!r}, expected one of {sorted(codes)}") from None
    try:
        col = np.array(raw, dtype=np.float64)
    except ValueError:
        bad = next(v for v in raw if not _is_number(v))
        raise fail(path, f"column {name!r} has the non-numeric value {bad!r}") from None
    if not np.isfinite(col).all():  # (a NaN made the min-max scaling zero the whole column)
        bad = int(np.flatnonzero(~np.isfinite(col))[0])
        raise fail(path, f"column {name!r} has {raw[bad]!r} in row {bad + 2}; fill or drop missing values first")
    return col


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _read(path) -> str:
    if not os.path.isfile(path):
        raise fail(path, "no such file")
    with open(path, encoding="utf-8") as f:
        return f.read()


def _files(directory, name):
    """``(table path, table text, [(edge path, edge text)])`` for ``name`` in ``directory``."""
    d = os.fspath(directory)
    if name == "bail":  # read the members from the archive, nothing extracted to disk
        zp = os.path.join(d, "bail.zip")
        try:
            with zipfile.ZipFile(zp) as z:
                members = set(z.namelist())
                need = ("bail/bail.csv", "bail/bail_edges.txt")
                missing = [m for m in need if m not in members]
                if missing:
                    raise fail(zp, f"archive lacks {missing[0]} (members: {listing(sorted(members))})")
                check_zip_members(z, zp, need)
                table = z.read(need[0]).decode("utf-8")
                edges = z.read(need[1]).decode("ascii")
        except (zipfile.BadZipFile, OSError) as exc:
            raise fail(zp, f"not a readable zip archive ({str(exc)[:60]}); re-copy it") from None
        except UnicodeDecodeError as exc:
            raise fail(zp, f"a member is not plain text ({exc.reason} at byte {exc.start})") from None
        return f"{zp}:bail/bail.csv", table, [(f"{zp}:bail/bail_edges.txt", edges)]
    table = os.path.join(d, _MARKERS[name])
    if name == "credit":
        edge_files = [os.path.join(d, f"{s}_edges.csv") for s in ("train", "val", "test")]
    elif name == "nba":
        edge_files = [os.path.join(d, "nba_relationship.txt")]
    else:
        edge_files = [os.path.join(d, f"{name}_edges.txt")]
    return table, _read(table), [(p, _read(p)) for p in edge_files]


def _credit_edges(path, text) -> np.ndarray:
    header, body = _read_csv(path, text)
    if header[1:] != ["person_1", "person_2"]:
        raise fail(path, f"expected the header ',person_1,person_2', got {','.join(header)!r}")
    try:
        return np.array([[int(r[1]), int(r[2])] for r in body], dtype=np.int64).reshape(-1, 2)
    except ValueError:
        raise fail(path, "person_1/person_2 must be integer node ids") from None


def load_fairness(path, name: Optional[str] = None, seed: int = 0) -> GraphData:
    """Reads one fairness graph: ``path`` is its folder (e.g. ``fair_bail/``) or the data root with
    ``name`` (``german``, ``bail``, ``credit``, ``income``, ``nba``).

    Args:
        path: folder holding the files of the table in the module doc.  name: which set, when
            ``path`` is the data root (or to check the folder holds that set).
        seed: seed of the NIFTY-style split (see :func:`fairness_split`).

    Returns:
        :class:`GraphData` with ``sensitive`` set; ``extras`` has ``sensitive_name``,
        ``label_name``, ``feature_names``, ``label_number`` and ``split``.

    Raises:
        ValueError: one line naming the file (a missing column, a non-binary sensitive attribute,
        an edge to a node that does not exist...).

    Example:
        >>> d = load_fairness("../shared/data/fair_bail")
        >>> d.num_nodes, d.num_edges // 2, d.num_features, int(d.sensitive.sum())
        (18876, 311870, 18, 9559)
    """
    d = os.fspath(path)
    found = fairness_name(d)
    if found is None and name is not None and os.path.isdir(os.path.join(d, f"fair_{name.lower()}")):
        d = os.path.join(d, f"fair_{name.lower()}")
        found = fairness_name(d)
    if found is None:
        raise fail(d, f"no fairness data set here (expected one of {listing(_MARKERS.values())}); {PICK_ONE}")
    if name is not None and name.lower() != found:
        raise fail(d, f"holds the {found!r} set, not {name!r}")
    spec = _SPECS[found]
    table_path, text, edge_texts = _files(d, found)
    header, body = _read_csv(table_path, text)
    n = len(body)
    codes = spec.get("codes", {})
    label = _column(table_path, header, body, spec["label"])
    if "label_map" in spec:
        lm = spec["label_map"]
        bad = sorted(set(np.unique(label).tolist()) - set(lm))
        if bad:
            raise fail(table_path, f"label column {spec['label']!r} has value {bad[0]}, expected {sorted(lm)}")
        label = np.array([lm[int(v)] for v in label], dtype=np.float64)
    if not np.isin(np.unique(label), (-1, 0, 1)).all():
        raise fail(table_path, f"label column {spec['label']!r} must hold 0/1 (or -1 for unknown)")
    sens = check_sensitive(table_path, _column(table_path, header, body, spec["sensitive"],
                                               codes.get(spec["sensitive"])), spec["sensitive"])
    feat_names = [c for c in header if c not in spec["drop"] and c != spec["label"]]
    cols = [_column(table_path, header, body, c, codes.get(c)) for c in feat_names]
    x = np.stack(cols, axis=1) if cols else np.zeros((n, 0))
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    x = np.where(hi > lo, 2.0 * (x - lo) / span - 1.0, 0.0)

    pairs = []
    for ep, et in edge_texts:
        if found == "credit":
            e = _credit_edges(ep, et)
        else:
            e = parse_int_table(ep, et, 2, "edge list")
        if found == "nba":  # Twitter user ids -> rows of nba.csv
            ids = _id_column(table_path, header, body, "user_id")
            row = {int(u): i for i, u in enumerate(ids)}
            if len(row) != ids.size:  # a repeated id would take all its edges from the first row
                dup = next(int(u) for u in np.unique(ids) if int((ids == u).sum()) > 1)
                raise fail(table_path, f"user_id {dup} appears more than once; each row must be one user")
            unknown = next((int(u) for u in e.reshape(-1) if int(u) not in row), None)
            if unknown is not None:
                raise fail(ep, f"user id {unknown} is not in {os.path.basename(table_path)}'s user_id column")
            e = np.array([[row[int(a)], row[int(b)]] for a, b in e], dtype=np.int64).reshape(-1, 2)
        check_edge_range(ep, e[:, 0], e[:, 1], n)
        pairs.append(e)
    e = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
    g = undirected_graph(e[:, 0], e[:, 1], n)
    y = torch.from_numpy(label.astype(np.int64))
    masks = fairness_split(y, spec["label_number"], seed)
    extras = {"split": f"fair(NIFTY, label_number={spec['label_number']}, seed={seed})",
              "label_number": spec["label_number"], "sensitive_name": spec["sensitive"],
              "label_name": spec["label"], "feature_names": feat_names, "format": "fair"}
    data = GraphData(g, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), y, *masks, 2, found,
                     torch.from_numpy(sens), extras)
    return data.validate()
