"""A generous bound on the CPU time of one call, for the tests that prove a routine is not pathological
(linear, not quadratic or exponential): the bound is far above the normal time and far below the old one.

CPU time of this process (`time.process_time`, every thread: an in-process server's too), not wall-clock
time, so that a loaded machine (CI runs two test workers on two cores) cannot fail a test that is fast."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

#: Per-call bound for the property tests of parsers and matchers: inputs that used to take many seconds.
CALL_BOUND = 2.0


def bounded(limit: float, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)`, asserting that it used less than `limit` seconds of CPU time."""
    started = time.process_time()
    result = fn(*args, **kwargs)
    elapsed = time.process_time() - started
    assert elapsed < limit, f"{getattr(fn, '__name__', fn)} took {elapsed:.3f} s of CPU (bound {limit} s)"
    return result
