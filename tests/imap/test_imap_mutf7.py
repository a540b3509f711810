"""Modified UTF-7 mailbox names (RFC 3501 section 5.1.3): the RFC examples, strict rejection of
non-canonical forms, the lenient mode, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.imap.mutf7 import MUtf7Error, decode_mutf7, encode_mutf7

EXAMPLES = [
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 section 5.1.3
    ("INBOX", "INBOX"),
    ("Tom & Jerry", "Tom &- Jerry"),
    ("&", "&-"),
    ("&&", "&-&-"),
    ("", ""),
    ("Entwürfe", "Entw&APw-rfe"),
    ("été", "&AOk-t&AOk-"),
    ("😀", "&2D3eAA-"),  # a surrogate pair in UTF-16
    ("a\x7fb", "a&AH8-b"),  # DEL is not printable: encoded
    ("tab\there", "tab&AAk-here"),
]


@pytest.mark.parametrize(("name", "encoded"), EXAMPLES)
def test_encode_and_decode_examples(name: str, encoded: str) -> None:
    assert encode_mutf7(name) == encoded
    assert decode_mutf7(encoded) == name
    assert decode_mutf7(encoded.encode()) == name


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("&AGE-", "canonical"),  # "a" must represent itself
        ("&ACY-", "canonical"),  # "&" must be "&-"
        ("Tom & Jerry", "does not start"),  # bare "&"
        ("&AOk", "does not start"),  # no terminating "-"
        ("&AOk-&AOk-", "canonical"),  # two adjacent runs: "&AOkA6Q-"
        ("&AOl-", "canonical"),  # non-zero padding bits
        ("&AO-", "odd number"),  # one octet of UTF-16
        ("&2D0-", "invalid"),  # an unpaired high surrogate
        ("&A=k-", "does not start"),
        ("&AO/k-", "does not start"),  # "/" is "," in modified BASE64
        ("é", "canonical"),  # raw 8-bit
        ("a\tb", "canonical"),  # raw control character
    ],
)
def test_strict_decoding_rejects_non_canonical_forms(text: str, reason: str) -> None:
    with pytest.raises(MUtf7Error, match=reason):
        decode_mutf7(text)


def test_strict_decoding_rejects_8bit_bytes() -> None:
    with pytest.raises(MUtf7Error, match="8-bit"):
        decode_mutf7("é".encode())


def test_lenient_decoding_keeps_what_it_cannot_decode() -> None:
    assert decode_mutf7("Tom & Jerry", strict=False) == "Tom & Jerry"
    assert decode_mutf7("&AGE-", strict=False) == "a"
    assert decode_mutf7("&2D0-x&AOk-", strict=False) == "&2D0-xé"
    assert decode_mutf7("été", strict=False) == "été"
    assert decode_mutf7("\xff".encode("latin-1"), strict=False) == "\ufffd"


def test_lone_surrogates_cannot_be_encoded() -> None:
    with pytest.raises(MUtf7Error):
        encode_mutf7("a\ud800b")


names = st.text(st.characters(exclude_categories=["Cs"]))


@given(names)
def test_round_trip(name: str) -> None:
    encoded = encode_mutf7(name)
    assert encoded.isascii()
    assert all(0x20 <= ord(c) <= 0x7E for c in encoded)
    assert decode_mutf7(encoded) == name


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_strict_decode_accepts_exactly_the_canonical_encodings(text: str) -> None:
    try:
        name = decode_mutf7(text)
    except MUtf7Error:
        decode_mutf7(text, strict=False)  # lenient never raises
        return
    assert encode_mutf7(name) == text


@given(st.binary())
def test_lenient_decode_never_raises(data: bytes) -> None:
    decode_mutf7(data, strict=False)
