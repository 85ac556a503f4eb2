"""Malformed inputs a review found accepted in silence: TU attribute rows of mixed widths, data-free
settings that failed only after training, heterogeneous splits that overlap, NaN features, float
labels, a sensitive attribute with one value, a NaN fairness column and a repeated NBA user id."""
import csv
import os
import shutil

import numpy as np
import pytest

from gkdfast.data._util import DataFormatError
from gkdfast.data.fairness import load_fairness
from gkdfast.data.tu import load_tu
from gkdfast.distill.datafree import DFADConfig
from gkdfast.distill.gfkd import GFKDConfig
from gkdfast.hetero.readers import load_hetero

from conftest import need_data


def _copy(rel, tmp_path):
    dst = tmp_path / os.path.basename(rel)
    shutil.copytree(need_data(rel), dst)
    return dst


def test_tu_node_attribute_rows_of_mixed_width_are_refused(tmp_path):
    d = _copy("tu_mutag", tmp_path)
    n = sum(1 for _ in open(d / "MUTAG_graph_indicator.txt"))
    rows = ["1,2", "3,4,5", "6"] + ["7,8"] * (n - 3)  # 2n values in all: the total alone passed
    (d / "MUTAG_node_attributes.txt").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match="node_attributes.txt: row 2 .* 3 values"):
        load_tu(str(d))


@pytest.mark.parametrize("make", [lambda: DFADConfig(batch_size=1), lambda: DFADConfig(num_nodes=1),
                                  lambda: DFADConfig(lr_student=0.0), lambda: DFADConfig(iters=-1),
                                  lambda: GFKDConfig(batch_size=0), lambda: GFKDConfig(min_nodes=1),
                                  lambda: GFKDConfig(lr_features=-1.0)])
def test_data_free_settings_are_checked_at_construction(make):
    with pytest.raises(ValueError, match="DFAD-GNN|GFKD"):
        make()


def test_hetero_splits_must_be_disjoint(tmp_path):
    d = _copy("hetero_heco_format/imdb", tmp_path)
    train = np.load(d / "train_20.npy")
    np.save(d / "test_20.npy", np.concatenate([np.load(d / "test_20.npy"), train]))
    with pytest.raises(DataFormatError, match="test_20.npy: shares .*train_20.npy"):
        load_hetero(str(d))


def test_hetero_nan_features_and_float_labels_are_refused(tmp_path):
    import scipy.sparse as sp

    d = _copy("hetero_heco_format/imdb", tmp_path)
    labels = np.load(d / "labels.npy")
    np.save(d / "labels.npy", labels.astype(np.float64) + 0.5)
    with pytest.raises(DataFormatError, match="labels.npy: label .* not a whole number"):
        load_hetero(str(d))
    np.save(d / "labels.npy", labels)
    feat = sp.load_npz(d / "m_feat.npz").tolil().astype(np.float32)
    feat[3, 0] = np.nan
    sp.save_npz(d / "m_feat.npz", feat.tocsr())
    with pytest.raises(DataFormatError, match="m_feat.npz: NaN or inf in the features .row 3"):
        load_hetero(str(d))


def _edit_csv(src, dst, edit):
    with open(src, newline="") as f:
        rows = list(csv.reader(f))
    edit(rows)
    with open(dst, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_fairness_tables_with_one_group_a_nan_column_or_a_repeated_user(tmp_path):
    d = _copy("fair_german", tmp_path)
    table = d / "german.csv"
    original = table.read_text()
    gender = lambda rows: rows[0].index("Gender")  # noqa: E731

    def one_group(rows):
        j = gender(rows)
        for r in rows[1:]:
            r[j] = rows[1][j]
    _edit_csv(table, table, one_group)
    with pytest.raises(DataFormatError, match="german.csv: sensitive attribute 'Gender' has the single value"):
        load_fairness(str(d))
    table.write_text(original)

    def nan_age(rows):
        rows[5][rows[0].index("Age")] = "nan"
    _edit_csv(table, table, nan_age)
    with pytest.raises(DataFormatError, match="german.csv: column 'Age' has 'nan' in row 6"):
        load_fairness(str(d))

    nba = _copy("fair_nba", tmp_path)
    _edit_csv(nba / "nba.csv", nba / "nba.csv", lambda rows: rows.append(list(rows[5])))
    with pytest.raises(DataFormatError, match="nba.csv: user_id .* appears more than once"):
        load_fairness(str(nba))
