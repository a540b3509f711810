"""Building a message from the webmail's form (postoffice.web.compose): the From is always the account's, no
field of the form can add a header field, addresses are read strictly (property tests)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.store import Account, Identity
from postoffice.web.compose import (
    Draft,
    Sender,
    SendError,
    build,
    parse_mailboxes,
    quote_text,
    reply_subject,
    sender_of,
    signature_block,
)


def test_addresses_as_people_type_them() -> None:
    assert parse_mailboxes("a@x.test, Bob <b@y.test>; 张三 <zhang@z.test>") == [
        ("", "a@x.test"),
        ("Bob", "b@y.test"),
        ("张三", "zhang@z.test"),
    ]
    assert parse_mailboxes("  ") == []
    for bad in ("bob", "a@b", "<>", "x@y.test, nonsense"):
        with pytest.raises(SendError):
            parse_mailboxes(bad)


def test_the_message_has_the_accounts_from_and_no_injected_field() -> None:
    draft = Draft(
        to="Bob <bob@remote.test>\r\nBcc: victim@remote.test",
        subject="hi\r\nX-Injected: yes",
        body="line\r\n.\r\nend",
        in_reply_to="<a@b> junk\r\nX-Evil: 1",
        references="<r1@b> <a@b>",
    )
    with pytest.raises(SendError):
        build(
            draft, Sender("demo@example.test"), "mail.example.test"
        )  # "bob@remote.test Bcc: ..." is no address
    draft.to = "Bob <bob@remote.test>"
    data = build(draft, Sender("demo@example.test"), "mail.example.test", now=1_700_000_000)
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert message["from"] == "demo@example.test"
    assert message["subject"] == "hi X-Injected: yes"
    assert message["in-reply-to"] == "<a@b>"
    assert message["references"] == "<r1@b> <a@b>"
    assert "X-Injected" not in message
    assert "X-Evil" not in message
    assert message["message-id"].endswith("@mail.example.test>")
    assert b"\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_replies_and_quotes() -> None:
    assert reply_subject("Re: lunch", "Re:") == "Re: lunch"
    assert reply_subject("lunch", "Re:") == "Re: lunch"
    assert quote_text("a\n\nb\n", "X wrote:") == "\n\nX wrote:\n> a\n>\n> b\n"


@given(st.text(max_size=300))
def test_any_address_text_is_read_or_refused_cleanly(text: str) -> None:
    try:
        pairs = parse_mailboxes(text)
    except SendError:
        return
    for _name, address in pairs:
        assert "@" in address
        assert not any(c.isspace() or ord(c) < 32 for c in address)


@given(st.text(max_size=200), st.text(max_size=200))
def test_any_subject_and_body_make_a_message_with_just_our_fields(subject: str, body: str) -> None:
    draft = Draft(to="bob@remote.test", subject=subject.replace("\x00", ""), body=body.replace("\x00", ""))
    message = email.message_from_bytes(
        build(draft, Sender("demo@example.test"), "h.test"), policy=email.policy.default
    )
    assert set(message.keys()) <= {
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Content-Type",
        "Content-Transfer-Encoding",
        "MIME-Version",
    }


def test_formatted_text_goes_as_sanitised_html_beside_the_text() -> None:
    draft = Draft(
        to="bob@remote.test",
        subject="formatted",
        body="Hello bold",
        html='<div>Hello <b>bold</b> <a href="javascript:x()" onclick="y()">x</a><img src=x>'
        '<script>alert(1)</script><a href="https://example.org/">ok</a></div>',
    )
    message = email.message_from_bytes(
        build(draft, Sender("demo@example.test"), "h.test"), policy=email.policy.default
    )
    assert message.get_content_type() == "multipart/alternative"
    assert isinstance(message, EmailMessage)
    text, html = list(message.iter_parts())
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    assert text.get_content_type() == "text/plain"
    assert text.get_content().strip() == "Hello bold"
    assert html.get_content_type() == "text/html"
    content = html.get_content()
    assert "<b>bold</b>" in content
    for bad in ("<script", "onclick", "javascript:", "<img"):
        assert bad not in content
    assert '<a href="https://example.org/" rel="noopener noreferrer">ok</a>' in content
    plain = email.message_from_bytes(
        build(Draft(to="bob@remote.test", body="just text"), Sender("demo@example.test"), "h.test"),
        policy=email.policy.default,
    )
    assert plain.get_content_type() == "text/plain"


def test_an_identity_gives_the_from_name_and_reply_to_and_the_default_is_used_when_none_is_chosen() -> None:
    account = Account(1, "demo@example.test", "example.test", "x", 0.0)
    identities = [
        Identity(7, 1, "sales@example.test", "Sales Team", "", "team@example.test", default=True),
        Identity(8, 1, "demo@example.test", "Demo 演示"),
    ]
    assert sender_of(account, [], "") == Sender("demo@example.test")
    assert sender_of(account, identities, "") == Sender(
        "sales@example.test", "Sales Team", "team@example.test"
    )
    assert sender_of(account, identities, "8") == Sender("demo@example.test", "Demo 演示")
    assert sender_of(account, identities, "0") == Sender("demo@example.test")  # the account's own address
    with pytest.raises(SendError):
        sender_of(account, identities, "999")  # not one of its identities
    message = email.message_from_bytes(
        build(Draft(to="bob@remote.test", body="hi"), sender_of(account, identities, ""), "h.test"),
        policy=email.policy.default,
    )
    assert str(message["from"]) == "Sales Team <sales@example.test>"
    assert str(message["reply-to"]) == "team@example.test"
    message = email.message_from_bytes(
        build(Draft(to="bob@remote.test", body="hi"), sender_of(account, identities, "8"), "h.test"),
        policy=email.policy.default,
    )
    assert message["from"].addresses[0].display_name == "Demo 演示"
    assert message["reply-to"] is None


def test_a_signature_comes_below_the_separator_line() -> None:
    assert signature_block("Demo\r\nExample Ltd\n") == "\n\n-- \nDemo\nExample Ltd\n"
    assert signature_block("  \n") == ""
