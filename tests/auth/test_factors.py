"""TOTP (RFC 6238) against the RFC's own test vectors, the drift window, key URIs; recovery codes and app
passwords: their shape, their normalisation and hash."""

from __future__ import annotations

import base64
import urllib.parse

from hypothesis import given
from hypothesis import strategies as st

from postoffice.auth import factors

# RFC 6238 appendix B: the SHA-1 seed is the ASCII string "12345678901234567890"; the vectors are 8 digits,
# and a 6-digit code is their last six (the same truncation, modulo 10^6).
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode().rstrip("=")
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


def test_codes_are_the_rfc_6238_test_vectors() -> None:
    for unix_time, eight_digits in RFC_VECTORS:
        assert factors.totp_code(RFC_SECRET, factors.totp_step(unix_time)) == eight_digits[-6:]


def test_a_code_matches_its_step_and_one_either_side_only() -> None:
    now = 1111111109.0
    step = factors.totp_step(now)
    assert factors.matching_step(RFC_SECRET, "081804", now) == step
    assert factors.matching_step(RFC_SECRET, "081 804", now) == step  # as some apps show it
    assert factors.matching_step(RFC_SECRET, "081804", now + 30) == step  # one step late
    assert factors.matching_step(RFC_SECRET, "081804", now - 30) == step  # one step early
    assert factors.matching_step(RFC_SECRET, "081804", now + 60) is None
    assert factors.matching_step(RFC_SECRET, "081805", now) is None
    assert factors.matching_step(RFC_SECRET, "08180", now) is None
    assert (
        factors.matching_step(RFC_SECRET, "０８１８０４", now) is None
    )  # fullwidth digits are not digits here


def test_a_new_secret_is_160_bits_of_base32_and_its_uri_names_issuer_and_account() -> None:
    secret = factors.new_totp_secret()
    assert len(secret) == 32
    assert len(base64.b32decode(secret)) == 20
    assert secret != factors.new_totp_secret()
    uri = factors.otpauth_uri(secret, "demo@example.test", "mail.example.test")
    parts = urllib.parse.urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert urllib.parse.unquote(parts.path) == "/mail.example.test:demo@example.test"
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert query == {
        "secret": secret,
        "issuer": "mail.example.test",
        "algorithm": "SHA1",
        "digits": "6",
        "period": "30",
    }


def test_the_qr_code_is_an_svg_element() -> None:
    svg = factors.qr_svg("otpauth://totp/x:y?secret=ABC")
    assert svg.startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
    assert "<script" not in svg


def test_recovery_codes_and_app_passwords_have_their_shapes_and_differ() -> None:
    codes = factors.new_recovery_codes()
    assert len(codes) == factors.RECOVERY_CODES == len(set(codes))
    for code in codes:
        assert len(code) == 11
        assert code[5] == "-"
    password = factors.new_app_password()
    assert len(password) == 19
    assert password.count(" ") == 3
    assert factors.looks_like_app_password(password)
    assert factors.looks_like_app_password(password.upper().replace(" ", "-"))
    assert not factors.looks_like_app_password("correct horse battery staple")
    assert not factors.looks_like_app_password(password[:-1])


def test_hashes_ignore_case_spaces_and_dashes_and_nothing_else() -> None:
    assert (
        factors.secret_hash("abcd efgh")
        == factors.secret_hash("ABCD-EFGH")
        == factors.secret_hash("abcdefgh")
    )
    assert factors.secret_hash("abcdefgh") != factors.secret_hash("abcdefgj")


@given(st.text(max_size=40))
def test_matching_any_typed_text_never_fails(text: str) -> None:
    step = factors.matching_step(RFC_SECRET, text, 1111111109.0)
    assert step is None or (text.split() and "".join(text.split()) == "081804")
    factors.secret_hash(text)
    factors.looks_like_app_password(text)
