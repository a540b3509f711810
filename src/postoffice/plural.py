"""Counts for people to read, in log lines, command output and protocol reply texts: "1 message",
"2 messages", "0 messages" (English plural: every count but one takes the plural)."""

from __future__ import annotations

__all__ = ["counted"]


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """ "1 message", "3 messages"; `plural` for nouns that do not just add "s" ("1 alias", "2 aliases")."""
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"
