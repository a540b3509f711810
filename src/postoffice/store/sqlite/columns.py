"""How IMAP values are kept in columns: system flags as a bit mask and keywords as one sorted string
(`flags_to_columns`, `columns_to_flags`), mailbox names with "/" as the hierarchy separator (RFC 9051 5.1) and
INBOX matched case-insensitively (`normalize_mailbox`).
"""

from __future__ import annotations

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


#: `columns_to_flags` keeps at most this many flag combinations, holding at most FLAG_CACHE_CHARS keyword
#: characters together: keywords are client data, and a cache keyed by them must not keep megabytes alive
#: (an lru_cache of 4096 combinations grew by the whole keyword list at every STORE of a new keyword, to
#: gigabytes; docs/decisions/0043).
FLAG_CACHE_ENTRIES = 4096
FLAG_CACHE_CHARS = 1 << 20


_flag_sets: dict[tuple[int, str], frozenset[str]] = {}
_flag_chars = [0]  # keyword characters held by _flag_sets


def columns_to_flags(bits: int, keywords: str) -> frozenset[str]:
    """Cached (see FLAG_CACHE_ENTRIES): a mailbox has few distinct flag combinations, and listing 10,000
    messages builds one each, so identical combinations share one frozenset. The reader threads share the
    cache; a race between them can only cost a rebuild."""
    try:
        return _flag_sets[bits, keywords]
    except KeyError:
        pass
    names = [name for i, name in enumerate(SYSTEM_FLAGS) if bits & (1 << i)]
    if keywords:
        names.extend(keywords.split(" "))
    flags = frozenset(names)
    if len(keywords) <= FLAG_CACHE_CHARS:
        if len(_flag_sets) >= FLAG_CACHE_ENTRIES or _flag_chars[0] + len(keywords) > FLAG_CACHE_CHARS:
            _flag_sets.clear()
            _flag_chars[0] = 0
        _flag_sets[bits, keywords] = flags
        _flag_chars[0] += len(keywords)
    return flags


def normalize_mailbox(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name
