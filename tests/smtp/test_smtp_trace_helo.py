"""The HELO/EHLO name in the Received header (RFC 5321 4.4): copied only when it is a domain or an address
literal, so that a client cannot forge trace information through it."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from postoffice.smtp.address import trace_helo


def test_domains_and_address_literals_are_kept() -> None:
    for name in ("client.remote.test", "localhost", "DESKTOP-AB_12", "mx.example.", "[192.0.2.1]"):
        assert trace_helo(name) == name
    assert trace_helo("[IPv6:2001:db8::1]") == "[IPv6:2001:db8::1]"


def test_anything_else_is_not_a_from_domain() -> None:
    for name in (
        "x) by evil.example (via [1.2.3.4]); Mon, 1 Jan 2001",
        "[127.0.0.1",
        "[300.1.1.1]",
        "[IPv6:zz]",
        "a..b",
        "-lead.example",
        "trail-.example",
        "a" * 64 + ".example",
        "spaced name",
        "semi;colon",
        "b\u00fccher.example",
        "",
    ):
        assert trace_helo(name) is None, name


@given(st.text(max_size=80))
def test_a_kept_name_cannot_carry_header_structure(name: str) -> None:
    shown = trace_helo(name)
    if shown is not None:
        assert re.fullmatch(r"[A-Za-z0-9._\-]+|\[[0-9A-Fa-f.:IPv]+\]", shown), shown
