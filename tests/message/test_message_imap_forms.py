"""`message.imap_forms.render_imap_forms`: the ENVELOPE and BODYSTRUCTURE kept with a stored message are
exactly what FETCH would render from the parse, for any message (the `_utf8` forms only when they differ)."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.imap import fetch, wire
from postoffice.message import imap_forms as forms
from postoffice.message import parse_message
from tests.message.test_message_fuzz import NOISE, message


def test_imap_uses_the_forms_and_strings_defined_with_the_message() -> None:
    """One implementation: what the store keeps and what IMAP sends cannot drift apart."""
    assert fetch.envelope is forms.envelope
    assert fetch.bodystructure is forms.bodystructure
    assert (wire.string, wire.nstring, wire.literal, wire.fmt_list) == (
        forms.string,
        forms.nstring,
        forms.literal,
        forms.fmt_list,
    )


def _check(raw: bytes) -> None:
    parsed = parse_message(io.BytesIO(raw))
    kept = forms.render_imap_forms(parsed)
    env = forms.envelope(parsed.envelope, utf8=False)
    body = forms.bodystructure(parsed.body, extended=True, utf8=False)
    env8 = forms.envelope(parsed.envelope, utf8=True)
    body8 = forms.bodystructure(parsed.body, extended=True, utf8=True)
    assert kept == (env, body, None if env8 == env else env8, None if body8 == body else body8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message())
def test_kept_forms_equal_rendering_the_parse(generated: tuple[bytes, object]) -> None:
    _check(generated[0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*NOISE, b"Subject: caf\xc3\xa9", b"From: J\xc3\xb6rg <j@x>"]), max_size=60))
def test_kept_forms_of_noise_and_8bit_headers_equal_rendering_the_parse(pieces: list[bytes]) -> None:
    _check(b"\r\n".join(pieces))
