"""The mailto method of Sieve's enotify (RFC 5436, URIs of RFC 6068): recipients and fields from the URI,
what is ignored, the notification message, and any text as a URI: parsed or a ValueError."""

from __future__ import annotations

import email
import email.policy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.sieve.mailto import MAX_RECIPIENTS, Mailto, notification, parse_mailto


def test_recipients_fields_and_body_come_from_the_uri() -> None:
    found = parse_mailto(
        "mailto:alice@example.org,Bob%20%3Cbob@example.org%3E?cc=carol@example.org&bcc=dave@example.org"
        "&subject=New%20mail&body=Look%21&From=evil@example.org&X-Tag=a%20b"
    )
    assert found.to == ("alice@example.org", "bob@example.org")
    assert found.cc == ("carol@example.org",)
    assert found.bcc == ("dave@example.org",)
    assert found.headers == {"subject": "New mail", "x-tag": "a b"}  # From is ignored (RFC 5436 2.3)
    assert found.body == "Look!"
    assert found.recipients == (
        "alice@example.org",
        "bob@example.org",
        "carol@example.org",
        "dave@example.org",
    )


@pytest.mark.parametrize(
    "uri",
    [
        "xmpp:a@example.org",
        "mailto:",
        "mailto:?subject=x",
        "mailto:not-an-address",
        "mailto:a@example.org?subject",
        "mailto:a@example.org b@example.org",
        "mailto:" + ",".join(f"u{i}@example.org" for i in range(MAX_RECIPIENTS + 1)),
    ],
)
def test_uris_that_cannot_be_used_are_refused(uri: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case its own reason
        parse_mailto(uri)


def test_the_notification_is_auto_notified_and_names_the_message() -> None:
    data = notification(
        Mailto(("alice@example.org",), bcc=("hidden@example.org",)),
        from_address="me@example.net",
        message="You have mail",
        original_subject="lunch?",
        original_from="friend@example.com",
        hostname="mx.example.net",
        importance="1",
    )
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["Auto-Submitted"] == "auto-notified"
    assert parsed["From"] == "me@example.net"
    assert parsed["To"] == "alice@example.org"
    assert parsed["Bcc"] is None  # bcc recipients are not named
    assert parsed["Subject"] == "You have mail"
    assert parsed["Importance"] == "high"
    assert "friend@example.com" in data.decode()
    assert "lunch?" in data.decode()


@given(st.text(max_size=200))
def test_any_text_is_a_mailto_uri_or_a_value_error(text: str) -> None:
    for uri in (text, "mailto:" + text):
        try:
            found = parse_mailto(uri)
        except ValueError:
            continue
        assert 0 < len(found.recipients) <= MAX_RECIPIENTS
