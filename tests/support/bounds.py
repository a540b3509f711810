"""A generous wall-clock bound on one call, for the tests that prove a routine is not pathological (linear,
not quadratic or exponential): the bound is far above the normal time and far below the old one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

#: Per-call bound for the property tests of parsers and matchers: inputs that used to take many seconds.
CALL_BOUND = 1.0


def bounded(limit: float, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)`, asserting that it returned within `limit` seconds."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    elapsed = time.perf_counter() - started
    assert elapsed < limit, f"{getattr(fn, '__name__', fn)} took {elapsed:.3f} s (bound {limit} s)"
    return result
