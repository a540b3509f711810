"""SASL mechanisms (RFC 4422): PLAIN (RFC 4616), LOGIN, and the base64 helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.auth.sasl import (
    CANCEL,
    MAX_FIELD_OCTETS,
    Challenge,
    Credentials,
    LoginMechanism,
    PlainMechanism,
    SaslFailure,
    create_mechanism,
    decode_response,
    encode_challenge,
    mechanism_names,
)


def test_mechanisms_are_offered_in_preference_order() -> None:
    assert mechanism_names() == ("PLAIN", "LOGIN")
    assert CANCEL == "*"


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("PLAIN", PlainMechanism),
        ("plain", PlainMechanism),
        ("Login", LoginMechanism),
        ("login", LoginMechanism),
    ],
)
def test_mechanism_names_are_case_insensitive(name: str, cls: type) -> None:
    assert isinstance(create_mechanism(name), cls)


@pytest.mark.parametrize("name", ["CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-256", "", "PLAİN", "X" * 100])
def test_unknown_mechanism_gives_none(name: str) -> None:
    assert create_mechanism(name) is None


def test_each_create_gives_a_fresh_exchange() -> None:
    assert create_mechanism("PLAIN") is not create_mechanism("PLAIN")


# -- PLAIN ---------------------------------------------------------------------------------------------------


def test_plain_with_initial_response_completes_at_once() -> None:
    mech = PlainMechanism()
    assert mech.start(b"\x00demo@example.test\x00secret") == Credentials("", "demo@example.test", "secret")


def test_plain_with_authzid() -> None:
    mech = PlainMechanism()
    result = mech.start(b"admin@example.test\x00demo@example.test\x00secret")
    assert result == Credentials("admin@example.test", "demo@example.test", "secret")


def test_plain_without_initial_response_sends_an_empty_challenge_first() -> None:
    mech = PlainMechanism()
    assert mech.start(None) == Challenge(b"")
    assert mech.step(b"\x00demo@example.test\x00p\xc3\xa4ss") == Credentials("", "demo@example.test", "päss")


def test_plain_empty_initial_response_is_malformed() -> None:
    # "=" on the wire: a zero-length initial response (RFC 4422 section 4), not "no initial response".
    assert isinstance(PlainMechanism().start(b""), SaslFailure)


@pytest.mark.parametrize(
    "message",
    [
        b"demo@example.test secret",  # no NUL at all
        b"demo@example.test\x00secret",  # one NUL
        b"\x00demo\x00secret\x00extra",  # three NULs
        b"\x00\x00secret",  # empty authcid
        b"\x00demo@example.test\x00",  # empty password
        b"\x00demo@example.test\x00\xff\xfe",  # password not UTF-8
        b"\x00d\xc3emo\x00secret",  # authcid not UTF-8 (truncated sequence)
        b"\xed\xa0\x80\x00demo\x00secret",  # authzid: an encoded surrogate is not UTF-8
        b"\x00demo\x00" + b"x" * (MAX_FIELD_OCTETS + 1),  # overlong password
        b"\x00" + b"d" * (MAX_FIELD_OCTETS + 1) + b"\x00secret",  # overlong authcid
    ],
)
def test_plain_malformed_messages_fail(message: bytes) -> None:
    assert isinstance(PlainMechanism().start(message), SaslFailure)
    mech = PlainMechanism()
    assert mech.start(None) == Challenge(b"")
    assert isinstance(mech.step(message), SaslFailure)


def test_plain_accepts_fields_up_to_the_limit() -> None:
    password = "x" * MAX_FIELD_OCTETS
    result = PlainMechanism().start(b"\x00demo@example.test\x00" + password.encode())
    assert result == Credentials("", "demo@example.test", password)


def test_plain_refuses_steps_after_the_end() -> None:
    mech = PlainMechanism()
    mech.start(b"\x00demo\x00secret")
    assert isinstance(mech.step(b"\x00demo\x00secret"), SaslFailure)
    assert isinstance(mech.start(None), SaslFailure)


def test_plain_refuses_a_step_before_start() -> None:
    assert isinstance(PlainMechanism().step(b"\x00demo\x00secret"), SaslFailure)


# -- LOGIN ---------------------------------------------------------------------------------------------------


def test_login_without_initial_response_asks_username_then_password() -> None:
    mech = LoginMechanism()
    assert mech.start(None) == Challenge(b"Username:")
    assert mech.step(b"demo@example.test") == Challenge(b"Password:")
    assert mech.step(b"secret") == Credentials("", "demo@example.test", "secret")


def test_login_initial_response_is_the_username() -> None:
    mech = LoginMechanism()
    assert mech.start(b"demo@example.test") == Challenge(b"Password:")
    assert mech.step(b"secret") == Credentials("", "demo@example.test", "secret")


@pytest.mark.parametrize("username", [b"", b"\xff", b"de\x00mo", b"u" * (MAX_FIELD_OCTETS + 1)])
def test_login_bad_username_fails(username: bytes) -> None:
    assert isinstance(LoginMechanism().start(username), SaslFailure)
    mech = LoginMechanism()
    mech.start(None)
    assert isinstance(mech.step(username), SaslFailure)


@pytest.mark.parametrize("password", [b"", b"\xc3", b"pass\x00word"])
def test_login_bad_password_fails(password: bytes) -> None:
    mech = LoginMechanism()
    mech.start(b"demo@example.test")
    assert isinstance(mech.step(password), SaslFailure)


def test_login_refuses_steps_after_the_end_and_before_start() -> None:
    mech = LoginMechanism()
    assert isinstance(mech.step(b"demo"), SaslFailure)
    mech = LoginMechanism()
    mech.start(b"demo")
    mech.step(b"secret")
    assert isinstance(mech.step(b"more"), SaslFailure)
    assert isinstance(mech.start(b"demo"), SaslFailure)


# -- base64 --------------------------------------------------------------------------------------------------


def test_decode_response_decodes_strict_base64() -> None:
    assert decode_response("AGRlbW9AZXhhbXBsZS50ZXN0AHNlY3JldA==") == b"\x00demo@example.test\x00secret"


@pytest.mark.parametrize("text", ["=", ""])
def test_decode_response_empty(text: str) -> None:
    assert decode_response(text) == b""


@pytest.mark.parametrize(
    "text",
    ["QQ", "QQ=", "Q Q==", " QQ==", "QQ==\r\n", "QQ==QQ==", "Q@==", "*", "é", "AGRl\nbW8="],
)
def test_decode_response_rejects_what_is_not_base64(text: str) -> None:
    assert decode_response(text) is None


def test_encode_challenge() -> None:
    assert encode_challenge(b"") == ""
    assert encode_challenge(b"Username:") == "VXNlcm5hbWU6"
    assert decode_response(encode_challenge(b"Password:")) == b"Password:"


# -- properties ----------------------------------------------------------------------------------------------

STEP_TYPES = (Challenge, Credentials, SaslFailure)


@given(
    name=st.sampled_from(mechanism_names()),
    initial=st.none() | st.binary(max_size=64),
    responses=st.lists(st.binary(max_size=64), max_size=5),
)
def test_arbitrary_bytes_never_raise(name: str, initial: bytes | None, responses: list[bytes]) -> None:
    mech = create_mechanism(name)
    assert mech is not None
    result = mech.start(initial)
    assert isinstance(result, STEP_TYPES)
    for response in responses:
        previous = result
        result = mech.step(response)
        assert isinstance(result, STEP_TYPES)
        if not isinstance(previous, Challenge):
            # once finished, every further step fails
            assert isinstance(result, SaslFailure)


@given(
    text=st.text(max_size=64),
)
def test_decode_response_never_raises(text: str) -> None:
    result = decode_response(text)
    assert result is None or isinstance(result, bytes)


FIELD = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)


@given(authzid=FIELD, authcid=FIELD.filter(bool), password=FIELD.filter(bool), with_initial=st.booleans())
def test_plain_round_trips(authzid: str, authcid: str, password: str, with_initial: bool) -> None:
    message = f"{authzid}\x00{authcid}\x00{password}".encode()
    wire = encode_challenge(message)  # the client's base64 is the same encoding
    decoded = decode_response(wire)
    assert decoded == message
    mech = PlainMechanism()
    if with_initial:
        result = mech.start(decoded)
    else:
        assert mech.start(None) == Challenge(b"")
        result = mech.step(decoded)
    assert result == Credentials(authzid, authcid, password)


@given(username=FIELD.filter(bool), password=FIELD.filter(bool))
def test_login_round_trips(username: str, password: str) -> None:
    mech = LoginMechanism()
    assert mech.start(None) == Challenge(b"Username:")
    assert mech.step(username.encode()) == Challenge(b"Password:")
    assert mech.step(password.encode()) == Credentials("", username, password)
