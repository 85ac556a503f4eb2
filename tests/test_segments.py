"""gkdfast._segments: the segment of each element and concatenated ranges, against Python loops."""
import pytest
import torch

from gkdfast._segments import concat_ranges, segment_ids


@pytest.mark.parametrize("counts", [[], [0], [0, 0, 3], [2, 0, 1, 4], [5]])
def test_segment_ids_and_ranges_equal_a_python_loop(counts):
    c = torch.tensor(counts, dtype=torch.int64)
    start = torch.tensor([7 * i + 3 for i in range(len(counts))], dtype=torch.int64)
    ids = [i for i, k in enumerate(counts) for _ in range(k)]
    ranges = [int(s) + j for s, k in zip(start, counts) for j in range(k)]
    assert segment_ids(c).tolist() == ids
    assert segment_ids(c, total=sum(counts)).tolist() == ids
    assert concat_ranges(start, c).tolist() == ranges
    assert concat_ranges(start, c, total=sum(counts)).tolist() == ranges
    assert concat_ranges(start, c).dtype == torch.int64


def test_dtypes_follow_the_request_and_the_starts():
    c = torch.tensor([1, 2], dtype=torch.int32)
    assert segment_ids(c, dtype=torch.int32).dtype == torch.int32
    assert concat_ranges(torch.tensor([4, 9], dtype=torch.int32), c).tolist() == [4, 9, 10]
    assert concat_ranges(torch.tensor([4, 9], dtype=torch.int32), c).dtype == torch.int32
