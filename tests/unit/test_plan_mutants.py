"""tailup.plan where mutation testing found it unchecked (`make mutants`, docs/testing.md): the
whole sentence of a uniform plan exceeded, and the words refusing a negative offset."""

from __future__ import annotations

import pytest

from tailup.plan import MiB, PartPlan, PartSizing


def test_the_exceeded_reason_of_a_uniform_plan_in_full() -> None:
    plan = PartPlan(8 * MiB, PartSizing.UNIFORM)
    assert plan.exceeded_reason(plan.capacity_bytes() + 1) == (
        "grew to 78.1 GiB (83886080001 bytes), past the capacity of its part plan: 78.1 GiB "
        "(83886080000 bytes, 10,000 parts of 8.0 MiB, --part-sizing uniform); a larger "
        "--part-size (at least 9MiB) holds it: recordings started after the change use it"
    )


def test_a_negative_offset_is_refused_in_words() -> None:
    with pytest.raises(ValueError, match=r"^offset -1 is negative$"):
        PartPlan(8 * MiB).part_containing(-1)
