"""Conversations: which stored messages belong together, decided once at delivery (docs/decisions/0047).

A message joins the conversation of any message of the same account it names or that names it: its own
Message-ID, and the ids of its In-Reply-To and References fields (RFC 5322 section 3.6.4), each taken together
with the message's base subject. So a reply joins its original whichever arrives first (each records the ids
it knows), and a reply that changes the subject starts a new conversation, as in Gmail, Fastmail and Cyrus
(JMAP, RFC 8621 section 3, lets the server decide). Messages without any id stand alone; a subject alone never
joins two messages (two unrelated "Hello" mails are not one conversation).

The base subject follows RFC 5256 section 2.1 (reply and forward prefixes, leading "[list]" blobs,
"[fwd: ...]" wrappers and "(fwd)" trailers removed, white space folded), with the prefixes the common mail
programs write in other languages (German AW/WG, Nordic SV/VS, Dutch Antw, Chinese 回复/答复/转发) besides
Re/Fw/Fwd; it is folded to lower case.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

#: A msg-id token of Message-ID, In-Reply-To or References (RFC 5322 section 3.6.4), as compared: exact.
MESSAGE_ID = re.compile(r"<[^<>\s]{1,250}>")

#: Ids of In-Reply-To and References kept per message: the first (the conversation's root, RFC 5322 section
#: 3.6.4) and the last ones (the nearest ancestors). A References field may list hundreds.
REFERENCES_KEPT = 20

_LEADER = re.compile(
    r"^(?:\s*(?:\[[^\[\]]*\]\s*)*(?:re|fw|fwd|aw|wg|sv|vs|antw|回复|答复|转发)\s*(?:\[[^\[\]]*\])?\s*[:：])+",
    re.IGNORECASE,
)
_TRAILER = re.compile(r"(?:\s*\(fwd\))+\s*$", re.IGNORECASE)
_FWD_WRAPPER = re.compile(r"^\s*\[fwd:\s*(.*)\]\s*$", re.IGNORECASE | re.DOTALL)
_BLOB = re.compile(r"^\s*\[[^\[\]]*\]\s*(?=\S)")


def message_ids(text: str) -> list[str]:
    """The <id@host> tokens of a Message-ID, In-Reply-To or References field, in order."""
    return MESSAGE_ID.findall(text)


def references_of(in_reply_to: str, references: str) -> list[str]:
    """The ids a message names as its ancestors (References, then In-Reply-To's), each once, at most
    REFERENCES_KEPT of them: the first and the last."""
    ids = list(dict.fromkeys(message_ids(references) + message_ids(in_reply_to)))
    if len(ids) > REFERENCES_KEPT:
        ids = ids[:1] + ids[-(REFERENCES_KEPT - 1) :]
    return ids


#: Ids of References that IMAP THREAD=REFERENCES links per message (`thread_references`): the first and the
#: last ones. Far above any real conversation's depth; a bound all the same (a field may list thousands).
THREAD_REFERENCES_KEPT = 100


def thread_references(in_reply_to: str, references: str) -> list[str]:
    """What RFC 5256's REFERENCES algorithm links for a message (section 4, step 1.A): the valid ids of its
    References field in their order, an id named twice named twice; when References has none, the first
    valid id of In-Reply-To alone. At most THREAD_REFERENCES_KEPT of them: the first and the last.

    Not `references_of`, which merges In-Reply-To in and names each id once (conversations need the set):
    the algorithm's parent is the last id of References even when In-Reply-To names another, or when that
    last id was named earlier in the field too."""
    ids = message_ids(references) or message_ids(in_reply_to)[:1]
    if len(ids) > THREAD_REFERENCES_KEPT:
        ids = ids[:1] + ids[-(THREAD_REFERENCES_KEPT - 1) :]
    return ids


def base_subject(subject: str) -> str:
    """RFC 5256 section 2.1's base subject, with the reply prefixes of other languages, folded."""
    text = " ".join(subject.split())
    for _ in range(16):  # each round removes at least one wrapper, prefix or trailer; bounded all the same
        before = text
        text = _TRAILER.sub("", text)
        text = _LEADER.sub("", text)
        wrapped = _FWD_WRAPPER.match(text)
        if wrapped:
            text = wrapped.group(1)
        text = _BLOB.sub("", text).strip()  # "[list] x": a leading blob goes when text remains after it
        if text == before:
            break
    return text.casefold()


def thread_keys(message_id: str | None, references: Sequence[str], subject: str) -> list[int]:
    """The keys under which a message's conversation is found: one per id it carries (its own first), each
    hashed with its base subject to a signed 64-bit integer (a store column)."""
    base = base_subject(subject)
    ids = message_ids(message_id or "")[:1] + list(references)
    keys: list[int] = []
    for mid in dict.fromkeys(ids):
        digest = hashlib.blake2b(f"{base}\0{mid}".encode(), digest_size=8).digest()
        keys.append(int.from_bytes(digest, "big", signed=True))
    return keys
