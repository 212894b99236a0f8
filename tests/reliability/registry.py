"""The rows of docs/reliability.md, declared next to the tests that prove them.

Each reliability test is decorated with :func:`reliability` (or parametrized with :func:`case`),
which records what was injected, what the export did and what the user sees. The doc is
generated from these records and checked by ``test_reliability_doc.py``, so it cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

KINDS = {
    "fault-survived": "Faults the export survives (the run succeeds, bytes identical)",
    "fault-clear-failure": "Faults that fail clearly and lose nothing",
    "bad-input": "Bad input, refused before any network call",
    "secret": "Secrets that never reach a log, an exception or a rendered template",
    "hostile": "Hostile conditions: racing writers, other local users, a lying API or storage host",
    "hostile-at-rest": "Hostile data at rest: files planted or edited in the destination by someone holding none of our keys",
    "freshness": "Outcomes: is every cluster protected right now by a fresh copy (stale, aged-out, new clusters)",
}


@dataclass(frozen=True)
class Row:
    kind: str
    injected: str
    export_did: str
    user_sees: str
    test: str


REGISTRY: list[Row] = []
F = TypeVar("F", bound=Callable[..., Any])


def _register(kind: str, injected: str, export_did: str, user_sees: str, test: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown reliability kind {kind!r}; use one of {sorted(KINDS)}")
    row = Row(kind, injected, export_did, user_sees, test)
    if row not in REGISTRY:
        REGISTRY.append(row)


def reliability(kind: str, injected: str, export_did: str, user_sees: str) -> Callable[[F], F]:
    """Declare the doc row a test proves."""

    def decorate(test: F) -> F:
        _register(kind, injected, export_did, user_sees, f"{test.__module__}::{test.__qualname__}")
        return test

    return decorate


def case(
    test_name: str, case_id: str, kind: str, injected: str, export_did: str, user_sees: str, *values: Any
) -> Any:
    """A ``pytest.param`` that is also a doc row (for table-driven tests such as bad input)."""
    module = _caller_module()
    _register(kind, injected, export_did, user_sees, f"{module}::{test_name}[{case_id}]")
    return pytest.param(*values, id=case_id)


def _caller_module() -> str:
    import inspect

    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None and frame.f_back.f_back is not None
    return str(frame.f_back.f_back.f_globals["__name__"])
