"""How IMAP values are kept in columns: system flags as a bit mask and keywords as one sorted string
(`flags_to_columns`, `columns_to_flags`), mailbox names with "/" as the hierarchy separator (RFC 9051 5.1) and
INBOX matched case-insensitively (`normalize_mailbox`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from postoffice.store.api import SYSTEM_FLAGS

#: IMAP hierarchy separator (RFC 9051 section 5.1): mailbox names are paths like "Archive/2026".
HIERARCHY_SEPARATOR = "/"

FLAG_BITS = {name.lower(): 1 << i for i, name in enumerate(SYSTEM_FLAGS)}


def flags_to_columns(flags: Iterable[str]) -> tuple[int, str]:
    """Split IMAP flags into the system-flag bit mask and the sorted keyword string (\\Recent is not
    stored)."""
    bits = 0
    keywords: set[str] = set()
    for flag in flags:
        bit = FLAG_BITS.get(flag.lower())
        if bit is not None:
            bits |= bit
        elif not flag.startswith("\\"):
            keywords.add(flag)
    return bits, " ".join(sorted(keywords))


@functools.lru_cache(maxsize=4096)
def columns_to_flags(bits: int, keywords: str) -> frozenset[str]:
    """Cached: a mailbox has few distinct flag combinations, and listing 10,000 messages builds one each."""
    names = [name for i, name in enumerate(SYSTEM_FLAGS) if bits & (1 << i)]
    if keywords:
        names.extend(keywords.split(" "))
    return frozenset(names)


def normalize_mailbox(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name
