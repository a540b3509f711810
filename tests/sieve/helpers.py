"""What the Sieve tests share."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from postoffice.sieve.grammar import SieveSyntaxError


def assert_refused(
    run: Callable[[str], object],
    error: type[SieveSyntaxError],
    script: str,
    place: tuple[int, int],
    words: str,
) -> None:
    """`run(script)` raises `error` at `place` (line, column) with `words` in its message."""
    with pytest.raises(error) as caught:
        run(script)
    assert words in caught.value.message, caught.value
    assert (caught.value.line, caught.value.column) == place, caught.value
    assert str(caught.value).startswith(f"line {place[0]}, column {place[1]}: ")
