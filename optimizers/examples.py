"""Train, dev and held-out examples for optimization, disjoint even when they come from one split."""

from __future__ import annotations

import random
from dataclasses import dataclass

import dspy

from ..data.loading import ReviewData
from ..runner import ProgramSettings


@dataclass(frozen=True)
class Portion:
    """`size` users of `split`, drawn after the portions before it that use the same split."""

    split: str
    size: int


def make_examples(data: ReviewData, portions: list[Portion], settings: ProgramSettings, seed: int = 0,
                  shuffle: bool = True) -> list[list[dspy.Example]]:
    """Examples `dspy.Example(task=..., reference=...).with_inputs("task")` for each portion, in order.

    Each split is shuffled once with `seed` (or kept in file order, as `drp run` takes it, so that stage
    outputs cached by earlier runs over the same users are reused) and consumed front to back, so a dev set
    and a held-out set taken from the same split never share a user; users without past reviews are skipped."""
    orders: dict[str, list] = {}
    taken: dict[str, int] = {}
    result = []
    for portion in portions:
        if portion.split not in data.rows:
            raise ValueError(f"split {portion.split!r} is not in the data (have: {sorted(data.rows)})")
        if portion.split not in orders:
            rows = [row for row in data.rows[portion.split] if row.profile]
            if shuffle:
                random.Random(seed).shuffle(rows)
            orders[portion.split], taken[portion.split] = rows, 0
        start = taken[portion.split]
        rows = orders[portion.split][start:start + portion.size]
        if len(rows) < portion.size:
            raise ValueError(f"split {portion.split!r} has {len(orders[portion.split]) - start} usable users left "
                             f"for a portion of {portion.size}")
        taken[portion.split] = start + portion.size
        result.append([dspy.Example(task=settings.task(row, data, portion.split), reference=row.data.text)
                       .with_inputs("task")
                       for row in rows])
    return result
