"""The memory budget's closing rule (core/budget.py), on holders that record their closing."""

from __future__ import annotations

import pytest

from core.budget import MemoryBudget


class Holder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed: str | None = None

    def over_budget(self, detail: str) -> None:
        self.closed = detail


def test_a_report_within_the_limit_is_accepted_and_counted() -> None:
    budget = MemoryBudget(100)
    a, b = Holder("a"), Holder("b")
    assert budget.update(a, 60) and budget.update(b, 40)
    assert (budget.total, budget.held(a), budget.held(b)) == (100, 60, 40)
    assert budget.update(a, 10) and budget.total == 50  # shrinking
    budget.release(b)
    assert budget.total == 10 and budget.statistics().peak == 100


def test_the_largest_holder_is_closed_first_and_the_reporter_keeps_its_bytes() -> None:
    budget = MemoryBudget(100)
    a, b = Holder("a"), Holder("b")
    budget.update(a, 70)
    assert budget.update(b, 40)  # 110 > 100: a (70) is the largest, not b (40)
    assert a.closed is not None and b.closed is None
    assert a.closed == (
        "over the daemon's memory budget: this connection would hold 70 bytes (buffered input "
        "and queued output) with 110 bytes held for all connections, over the budget of 100 bytes"
    )
    assert (budget.total, budget.held(a), budget.held(b)) == (40, 0, 40)
    assert budget.statistics().closed == 1


def test_the_reporter_is_closed_when_it_is_the_largest_or_tied() -> None:
    budget = MemoryBudget(100)
    a, b, c = Holder("a"), Holder("b"), Holder("c")
    budget.update(a, 50)
    assert not budget.update(b, 60)  # b would be the largest: b is closed, a keeps its 50
    assert b.closed is not None and a.closed is None and budget.total == 50
    assert not budget.update(c, 51)  # a 50 and c 51: c is the largest
    assert budget.total == 50 and budget.statistics().peak <= 100
    tied = MemoryBudget(100)
    e, f = Holder("e"), Holder("f")
    tied.update(e, 60)
    assert not tied.update(f, 60) and e.closed is None  # a tie: the reporter goes
    assert tied.total == 60


def test_several_holders_are_closed_until_the_rest_fits() -> None:
    budget = MemoryBudget(100)
    holders = [Holder(str(i)) for i in range(4)]
    for h in holders:
        budget.update(h, 25)
    new = Holder("new")
    assert budget.update(new, 20)  # 120: closes one 25 (the largest, first found)
    assert sum(h.closed is not None for h in holders) == 1 and budget.total == 95


def test_unlimited_counts_only_and_a_negative_limit_is_refused() -> None:
    budget = MemoryBudget(None)
    assert budget.update(Holder("a"), 10**12) and budget.total == 10**12
    with pytest.raises(ValueError, match="memory budget must be >= 0 bytes, got -1"):
        MemoryBudget(-1)
