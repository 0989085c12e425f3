"""Issue 21's drill in CI: every bad input, edited result and misdirected output of tests/drill.py
ends as it should (a refusal: one line naming the file or value, exit 2, nothing changed)."""
from __future__ import annotations

import io

import pytest

from samedge.data_fetch import MIRROR_ENV
from tests.drill import drill

CASES = 94  # the README quotes this count


@pytest.mark.slow
def test_every_case_of_the_drill_ends_as_it_should(mirror, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    table = io.StringIO()
    outcomes = drill(out=table)
    print(table.getvalue())  # shown by pytest -rA, and on failure
    assert [o.case.name for o in outcomes if not o.clean] == [], table.getvalue()
    assert len(outcomes) == CASES
