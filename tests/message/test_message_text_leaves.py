"""`message.text.text_leaves`: the one walk over the text/* leaves that both the parser (the search text
stored at delivery) and the store's search (the text decoded again from the stored bytes when the stored
one was cut) use, so the two texts agree by construction."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings

from postoffice.message import BodyPart, parse_message
from postoffice.message.text import part_text, text_leaves
from postoffice.store import search as store_search
from tests.message.message_invariants import walk
from tests.message.test_message_fuzz import message


def test_the_store_search_walks_the_leaves_with_the_parsers_function() -> None:
    assert vars(store_search)["text_leaves"] is text_leaves


def _expected_leaves(body: BodyPart) -> list[BodyPart]:
    """Written independently: the non-empty text leaves in `email`'s walk order (a part, its children, its
    embedded message)."""
    return [
        p
        for p in walk(body)
        if not p.parts and p.embedded is None and p.type == "text" and p.body_end > p.body_start
    ]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message())
def test_the_search_text_is_the_decoded_text_leaves_joined(generated: tuple[bytes, object]) -> None:
    raw, _spec = generated
    parsed = parse_message(io.BytesIO(raw))
    leaves = text_leaves(parsed.body)
    assert [id(p) for p in leaves] == [id(p) for p in _expected_leaves(parsed.body)]
    if not parsed.search_truncated:
        fp = io.BytesIO(raw)
        texts = [part_text(fp, leaf, 2 * leaf.size + 16)[0] for leaf in leaves]
        assert parsed.search_text == "\n".join(texts)
