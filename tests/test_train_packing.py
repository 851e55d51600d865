"""Packing keeps the copies of one item together, so each step's letter answers balance (train/packing.py)."""

from __future__ import annotations

import pytest

from aloekit.train.packing import pack_groups


def test_every_sample_lands_in_exactly_one_row_and_no_row_exceeds_max_length() -> None:
    lengths = [100, 300, 50, 512, 7, 200, 200, 90]
    groups = [str(i) for i in range(len(lengths))]
    bins = pack_groups(lengths, groups, 512)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)


def test_the_rotated_copies_of_a_question_share_a_row_even_when_other_samples_would_fit_better() -> None:
    # Four copies of q1 (100 tokens each) and four of q2; single samples of 400 tokens would each take one copy
    # if copies were placed one by one.
    lengths = [100] * 8 + [400, 400]
    groups = ["q1"] * 4 + ["q2"] * 4 + ["s1", "s2"]
    bins = pack_groups(lengths, groups, 512)
    row_of = {i: n for n, b in enumerate(bins) for i in b}
    assert len({row_of[i] for i in range(4)}) == 1
    assert len({row_of[i] for i in range(4, 8)}) == 1


def test_a_group_too_long_for_one_row_is_packed_sample_by_sample() -> None:
    bins = pack_groups([300, 300, 300], ["q", "q", "q"], 512)
    assert len(bins) == 3 and sorted(i for b in bins for i in b) == [0, 1, 2]


def test_packing_is_best_fit_so_rows_are_full() -> None:
    bins = pack_groups([300, 200, 212, 100], ["a", "b", "c", "d"], 512)
    assert sorted(sorted(sum([300, 200, 212, 100][i] for i in b) for b in bins)) == [300, 512]


def test_a_sample_longer_than_a_row_is_a_bug_of_the_caller() -> None:
    with pytest.raises(ValueError, match="truncate"):
        pack_groups([600], ["a"], 512)


def test_grouped_order_keeps_each_questions_pairs_consecutive_and_shuffles_the_questions() -> None:
    from aloekit.train.packing import grouped_order

    groups = [f"q{i % 5}" for i in range(20)]  # five questions, their four pairs scattered through the file
    order = grouped_order(groups, seed=0)
    assert sorted(order) == list(range(20))
    blocks = [groups[i] for i in order]
    assert all(len(set(blocks[k : k + 4])) == 1 for k in range(0, 20, 4))
    assert grouped_order(groups, seed=0) == order
    assert [blocks[k] for k in range(0, 20, 4)] != [f"q{i}" for i in range(5)] or grouped_order(groups, 1) != order
