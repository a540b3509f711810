"""Mail text in any charset reads right in the webmail (postoffice.web.mailview): the declared charset,
decoded with the superset browsers use where mail is commonly mislabelled, bad bytes as U+FFFD, never an
error."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.web.mailview import _content, text_of

TEXT = {
    "gb2312": "你好，世界。简体中文邮件。",
    "gbk": "你好，世界。繁體字也行：體",
    "gb18030": "你好 𠀀 世界",
    "big5": "您好，世界。繁體中文。",
    "iso-2022-jp": "こんにちは、世界。",
    "utf-8": "Grüße, 你好, привет",
    "iso-8859-1": "Grüße aus Köln",
    "windows-1252": "Euro € and “quotes”",
    "koi8-r": "Привет, мир",
}


def part(charset: str, payload: bytes, encoding: str = "8bit") -> EmailMessage:
    head = f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
    raw = head.encode() + payload
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize("charset", sorted(TEXT))
def test_each_charset(charset: str) -> None:
    encoded = TEXT[charset].encode("gb18030" if charset == "gbk" else charset)
    assert _content(part(charset, encoded)) == TEXT[charset]


def test_mislabelled_text_still_reads() -> None:
    gbk_in_gb2312 = "體育".encode("gbk")  # not in GB2312: mail labelled gb2312 is GBK in practice
    assert _content(part("gb2312", gbk_in_gb2312)) == "體育"
    assert _content(part("iso-8859-1", "€".encode("cp1252"))) == "€"
    assert _content(part("us-ascii", "naïve".encode())) == "naïve"
    assert _content(part("x-unknown-charset", "plain ✓".encode())) == "plain ✓"
    assert _content(part("utf-8", b"bad \xff byte")) == "bad \ufffd byte"


def test_transfer_encodings_and_html_for_quoting() -> None:
    assert _content(part("utf-8", b"=E4=BD=A0=E5=A5=BD", "quoted-printable")) == "你好"
    assert _content(part("utf-8", b"5L2g5aW9", "base64")) == "你好"
    html = email.message_from_bytes(
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>you</b><script>x()</script></p>",
        policy=email.policy.default,
    )
    assert isinstance(html, EmailMessage)
    assert text_of(html) == "Hello you"


@given(st.sampled_from([*sorted(TEXT), "gb2312", "big5", "shift_jis", "nonsense"]), st.binary(max_size=200))
def test_any_bytes_in_any_charset_decode_without_error(charset: str, payload: bytes) -> None:
    assert isinstance(_content(part(charset, payload.replace(b"\r", b"").replace(b"\n", b" "))), str)
