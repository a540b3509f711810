"""SMTP protocol core: the DSN parameters (RFC 3461) RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT, their
line lengths, and the xtext codec (postoffice.smtp.xtext) with its property tests."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.smtp.protocol import (
    ENVID_MAX_CHARS,
    Envelope,
    Event,
    Hello,
    MailFrom,
    MessageComplete,
    RcptTo,
    SmtpServerProtocol,
    SmtpSettings,
    parse_notify,
    parse_orcpt,
)
from postoffice.smtp.xtext import decode_xtext, encode_xtext

HOST = "mx.example.test"
MAIL = b"MAIL FROM:<a@example.org>"
RCPT = b"RCPT TO:<b@example.test>"
XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*")  # RFC 3461 section 4


class Session:
    """Drives a protocol core like the glue does and accepts every decision."""

    def __init__(self, *, ehlo: bool = True, **settings: Any) -> None:
        self.proto = SmtpServerProtocol(SmtpSettings(HOST, **settings))
        self.events: list[Event] = []
        self.proto.greeting()
        self.proto.data_to_send()
        if ehlo:
            self.send(b"EHLO client.example\r\n")
            self.events.clear()

    def send(self, data: bytes) -> str:
        self.proto.receive_data(data)
        while (event := self.proto.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, Hello | MailFrom | RcptTo | MessageComplete):
                self.proto.accept()
        return self.proto.data_to_send().decode()


def in_transaction(**settings: Any) -> Session:
    s = Session(**settings)
    s.send(MAIL + b"\r\n")
    s.events.clear()
    return s


# ------------------------------------------------------------------------------------------------- EHLO


def test_ehlo_advertises_dsn_by_default_and_not_when_off() -> None:
    assert "250-DSN\r\n" in Session(ehlo=False).send(b"EHLO c\r\n")
    assert "DSN" not in Session(ehlo=False, dsn=False).send(b"EHLO c\r\n")


# ------------------------------------------------------------------------------------------------- MAIL


def test_mail_ret_and_envid_are_validated_and_passed_on() -> None:
    s = Session()
    assert s.send(MAIL + b" RET=hdrs ENVID=QQ+2B1+3D2\r\n") == "250 2.1.0 Sender OK\r\n"
    assert s.events == [MailFrom("a@example.org", {"RET": "HDRS", "ENVID": "QQ+2B1+3D2"})]
    assert decode_xtext("QQ+2B1+3D2") == "QQ+1=2"
    assert s.proto.envelope == Envelope("a@example.org", {"RET": "HDRS", "ENVID": "QQ+2B1+3D2"}, ())


def test_mail_ret_full() -> None:
    s = Session()
    assert s.send(MAIL + b" ret=Full\r\n") == "250 2.1.0 Sender OK\r\n"
    assert s.events == [MailFrom("a@example.org", {"RET": "FULL"})]


@pytest.mark.parametrize(
    ("params", "reply"),
    [
        (b"RET=NONE", "501 5.5.4 Syntax: RET=FULL or RET=HDRS"),
        (b"RET", "501 5.5.4 Syntax: RET=FULL or RET=HDRS"),
        (b"ENVID", "501 5.5.4 Syntax: ENVID=<xtext of at most 100 printable characters>"),
        (b"ENVID=a+2b", "501 5.5.4 Syntax: ENVID=<xtext of at most 100 printable characters>"),
        (b"ENVID=a+", "501 5.5.4 Syntax: ENVID=<xtext of at most 100 printable characters>"),
        (b"ENVID=a+G1", "501 5.5.4 Syntax: ENVID=<xtext of at most 100 printable characters>"),
        (
            b"ENVID=a+0D+0AX-Injected:+20yes",
            "501 5.5.4 Syntax: ENVID=<xtext of at most 100 printable characters>",
        ),
        (b"ENVID=+C3+A9", "501 5.5.4 Syntax: ENVID=<xtext of at most 100 printable characters>"),
        (b"ENVID=" + b"x" * 101, "501 5.5.4 Syntax: ENVID=<xtext of at most 100 printable characters>"),
        (b"RET=FULL RET=HDRS", "501 5.5.4 Duplicate parameter RET"),
        (b"ENVID=a ENVID=b", "501 5.5.4 Duplicate parameter ENVID"),
        (b"ENVID=a=b", "501 5.5.4 Invalid parameter value"),
    ],
)
def test_malformed_mail_dsn_parameters_are_501(params: bytes, reply: str) -> None:
    s = Session()
    assert s.send(MAIL + b" " + params + b"\r\n") == reply + "\r\n"
    assert s.events == []
    assert s.proto.envelope is None


def test_envid_length_counts_decoded_characters() -> None:
    s = Session()
    encoded = "+2B" * ENVID_MAX_CHARS  # 300 characters of xtext, 100 decoded
    assert s.send(MAIL + b" ENVID=" + encoded.encode() + b"\r\n") == "250 2.1.0 Sender OK\r\n"
    assert decode_xtext(encoded) == "+" * 100


def test_non_ascii_envid_is_refused_even_with_smtputf8() -> None:
    s = Session()
    assert s.send("MAIL FROM:<a@example.org> ENVID=é\r\n".encode()) == (
        "501 5.5.4 Non-ASCII parameter value requires SMTPUTF8\r\n"
    )
    assert s.send("MAIL FROM:<a@example.org> SMTPUTF8 ENVID=é\r\n".encode()).startswith(
        "501 5.5.4 Syntax: ENVID"
    )


def test_mail_dsn_parameters_are_unknown_when_dsn_is_off() -> None:
    s = Session(dsn=False)
    assert s.send(MAIL + b" RET=FULL\r\n") == "555 5.5.4 Unsupported parameter RET\r\n"
    assert s.send(MAIL + b" ENVID=x\r\n") == "555 5.5.4 Unsupported parameter ENVID\r\n"


# ------------------------------------------------------------------------------------------------- RCPT


@pytest.mark.parametrize(
    ("value", "stored", "parsed"),
    [
        ("NEVER", "NEVER", {"NEVER"}),
        ("never", "NEVER", {"NEVER"}),
        ("SUCCESS", "SUCCESS", {"SUCCESS"}),
        ("success,Delay", "SUCCESS,DELAY", {"SUCCESS", "DELAY"}),
        ("FAILURE,DELAY,SUCCESS", "FAILURE,DELAY,SUCCESS", {"SUCCESS", "FAILURE", "DELAY"}),
    ],
)
def test_rcpt_notify_is_upper_cased_and_parses(value: str, stored: str, parsed: set[str]) -> None:
    s = in_transaction()
    assert s.send(RCPT + f" NOTIFY={value}\r\n".encode()) == "250 2.1.5 Recipient OK\r\n"
    assert s.events == [RcptTo("b@example.test", {"NOTIFY": stored})]
    assert parse_notify(stored) == parse_notify(value) == frozenset(parsed)


@pytest.mark.parametrize(
    "value",
    [b"", b"NEVER,SUCCESS", b"SUCCESS,NEVER", b"NEVER,NEVER", b"SUCCESS,", b",DELAY", b"FAIL", b"A,,B"],
)
def test_malformed_notify_is_501(value: bytes) -> None:
    s = in_transaction()
    param = b" NOTIFY=" + value if value else b" NOTIFY"
    assert s.send(RCPT + param + b"\r\n") == (
        "501 5.5.4 Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY (one or more)\r\n"
    )
    assert s.events == []
    with pytest.raises(ValueError, match="NOTIFY is NEVER or a list"):
        parse_notify(value.decode())


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("rfc822;bob@example.test", ("rfc822", "bob@example.test")),
        ("RFC822;b+2Bob@example.test", ("RFC822", "b+ob@example.test")),
        ("rfc822;+22john+20doe+22@example.test", ("rfc822", '"john doe"@example.test')),
        ("x400;/c+3Dus/ad+3Dattmail/", ("x400", "/c=us/ad=attmail/")),
        ("utf-8;j\\x{F6}rg@example.test", ("utf-8", "jörg@example.test")),
        ("UTF-8;\\x{7528}\\x{6237}@example.test", ("UTF-8", "用户@example.test")),
    ],
)
def test_rcpt_orcpt_is_passed_as_sent_and_parses(value: str, parsed: tuple[str, str]) -> None:
    s = in_transaction()
    assert s.send(RCPT + f" ORCPT={value} NOTIFY=FAILURE\r\n".encode()) == "250 2.1.5 Recipient OK\r\n"
    assert s.events == [RcptTo("b@example.test", {"ORCPT": value, "NOTIFY": "FAILURE"})]
    assert parse_orcpt(value) == parsed


def test_utf8_orcpt_in_an_smtputf8_transaction_may_carry_utf8_unitext() -> None:
    s = Session()
    s.send(b"MAIL FROM:<a@example.org> SMTPUTF8\r\n")
    assert s.send("RCPT TO:<jörg@example.test> ORCPT=utf-8;jörg@example.test\r\n".encode()) == (
        "250 2.1.5 Recipient OK\r\n"
    )
    assert parse_orcpt("utf-8;jörg@example.test") == ("utf-8", "jörg@example.test")
    # Raw UTF-8 is for utf-8 only: rfc822 addresses are US-ASCII xtext.
    assert s.send("RCPT TO:<b@example.test> ORCPT=rfc822;jörg@example.test\r\n".encode()).startswith(
        "501 5.5.4"
    )


def test_utf8_orcpt_without_smtputf8_must_be_ascii() -> None:
    s = in_transaction()
    assert s.send("RCPT TO:<b@example.test> ORCPT=utf-8;jörg@example.test\r\n".encode()) == (
        "501 5.5.4 Non-ASCII parameter value requires SMTPUTF8\r\n"
    )


@pytest.mark.parametrize(
    "value",
    [
        b"bob@example.test",
        b"rfc822;",
        b";bob@example.test",
        b"rfc.822;bob",
        b"rfc(822);bob",
        b"rfc822;bob+2b",
        b"rfc822;bob+",
        b"rfc822;+C3+A9@example.test",
        b"rfc822;bob+0D+0Aevil",
        b"rfc822;+20",
        b"utf-8;a+2Bb",
        b"utf-8;a\\b",
        b"utf-8;\\x{D800}",
        b"utf-8;\\x{110000}",
        b"utf-8;\\x{0A}",
        b"utf-8;\\x{85}",
        b"utf-8;bob\\x{202E}@example.test",  # decision 0025: no bidi controls in an address
        b"utf-8;bob\\x{2028}@example.test",
    ],
)
def test_malformed_orcpt_is_501(value: bytes) -> None:
    s = in_transaction()
    assert (
        s.send(RCPT + b" ORCPT=" + value + b"\r\n")
        == "501 5.5.4 Syntax: ORCPT=<addr-type>;<xtext address>\r\n"
    )
    assert s.events == []
    with pytest.raises(ValueError, match=r"ORCPT|xtext"):
        parse_orcpt(value.decode())


def test_rcpt_dsn_parameters_are_unknown_when_dsn_is_off_or_unknown_anyway() -> None:
    s = in_transaction(dsn=False)
    assert s.send(RCPT + b" NOTIFY=NEVER\r\n") == "555 5.5.4 Unsupported parameter NOTIFY\r\n"
    assert s.send(RCPT + b" ORCPT=rfc822;b@example.test\r\n") == "555 5.5.4 Unsupported parameter ORCPT\r\n"
    s = in_transaction()
    assert s.send(RCPT + b" NOTIFY=NEVER RET=FULL\r\n") == "555 5.5.4 Unsupported parameter RET\r\n"
    assert s.send(RCPT + b" NOTIFY=NEVER notify=SUCCESS\r\n") == "501 5.5.4 Duplicate parameter NOTIFY\r\n"
    assert s.events == []


def test_rcpt_parameters_require_ehlo() -> None:
    s = Session(ehlo=False)
    s.send(b"HELO old\r\n" + MAIL + b"\r\n")
    assert s.send(RCPT + b" NOTIFY=NEVER\r\n") == "555 5.5.4 RCPT parameters require EHLO\r\n"


def test_rcpt_parameters_reach_the_glue_in_the_event_only() -> None:
    s = in_transaction()
    s.send(RCPT + b" NOTIFY=SUCCESS\r\n")
    envelope = s.proto.envelope
    assert envelope is not None
    assert envelope.recipients == ("b@example.test",)
    assert s.events == [RcptTo("b@example.test", {"NOTIFY": "SUCCESS"})]


# ---------------------------------------------------------------------------------------------- lengths


def test_rcpt_line_may_be_500_octets_longer_with_dsn() -> None:
    s = in_transaction()
    head = RCPT + b" ORCPT=rfc822;"
    address = b"x" * (512 + 500 - len(head) - 2)
    assert s.send(head + address + b"\r\n") == "250 2.1.5 Recipient OK\r\n"
    assert s.send(head + address + b"x\r\n") == "500 5.5.2 Line too long\r\n"
    s = in_transaction(dsn=False)
    assert s.send(RCPT + b" X=" + b"x" * 600 + b"\r\n") == "500 5.5.2 Line too long\r\n"


def test_mail_line_may_be_100_octets_longer_with_dsn() -> None:
    head = MAIL + b" ENVID=+2B"
    line_612 = head + b"a" * (512 + 100 - len(head) - 2 - len(b" RET=FULL")) + b" RET=FULL\r\n"
    assert len(line_612) == 612
    s = Session()
    assert s.send(line_612).startswith("501 5.5.4 Syntax: ENVID")  # read as a line: the ENVID is too long
    assert s.send(line_612[:-2] + b"x\r\n") == "500 5.5.2 Line too long\r\n"
    assert Session(dsn=False).send(line_612) == "500 5.5.2 Line too long\r\n"


# ------------------------------------------------------------------------------------------------ xtext


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("", ""),
        ("abc", "abc"),
        ("+2B", "+"),
        ("+3D", "="),
        ("a+20b", "a b"),
        ("+C3+A9", "é"),
        ("!~", "!~"),
    ],
)
def test_decode_xtext(encoded: str, decoded: str) -> None:
    assert decode_xtext(encoded) == decoded


@pytest.mark.parametrize("bad", ["+", "+2", "+2b", "+g0", "a b", "a=b", "é", "\x00", "+FF", "+C3"])
def test_decode_xtext_refuses_what_is_not_xtext(bad: str) -> None:
    with pytest.raises(ValueError, match="xtext"):
        decode_xtext(bad)


def test_encode_xtext_examples() -> None:
    assert encode_xtext("a+b=c d") == "a+2Bb+3Dc+20d"
    assert encode_xtext("é\r\n") == "+C3+A9+0D+0A"
    assert encode_xtext("bob@example.test") == "bob@example.test"


@given(st.text())
def test_xtext_round_trip(value: str) -> None:
    encoded = encode_xtext(value)
    assert XTEXT.fullmatch(encoded)
    assert decode_xtext(encoded) == value


@given(st.text(alphabet=st.sampled_from("+=AF09az!~ \x00é")))
def test_decode_xtext_only_ever_raises_value_error(text: str) -> None:
    try:
        decoded = decode_xtext(text)
    except ValueError:
        assert not XTEXT.fullmatch(text) or not _is_utf8(text)
    else:
        assert XTEXT.fullmatch(text)
        assert encode_xtext(decoded) == encode_xtext(decode_xtext(encode_xtext(decoded)))


@given(st.text(max_size=40))
def test_dsn_parameter_parsers_only_ever_raise_value_error(value: str) -> None:
    for parse in (parse_notify, parse_orcpt, decode_xtext):
        try:
            parse(value)
        except ValueError:
            pass


def _is_utf8(xtext: str) -> bool:
    octets = bytearray()
    i = 0
    while i < len(xtext):
        if xtext[i] == "+":
            octets.append(int(xtext[i + 1 : i + 3], 16))
            i += 3
        else:
            octets += xtext[i].encode()
            i += 1
    try:
        octets.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ------------------------------------------------------------------------------------------- properties


DSN_ATOMS = [
    b"EHLO c\r\n",
    MAIL + b" RET=HDRS ENVID=id+2B1\r\n",
    MAIL + b" RET=BAD\r\n",
    RCPT + b" NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+40example.test\r\n",
    RCPT + b" NOTIFY=NEVER,SUCCESS\r\n",
    RCPT + b" ORCPT=rfc822;" + b"x" * 700 + b"\r\n",
    MAIL + b" ENVID=" + b"y" * 700 + b"\r\n",
    b"RSET\r\n",
    b"x" * 700,
    b"\r\n",
]


@given(
    atoms=st.lists(st.sampled_from(DSN_ATOMS), min_size=1, max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=12),
)
def test_dsn_sessions_do_not_depend_on_the_split(atoms: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(atoms)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    whole = Session(ehlo=False, max_errors=1000)
    replies_whole = whole.send(stream)
    split = Session(ehlo=False, max_errors=1000)
    replies_split = "".join(split.send(piece) for piece in pieces if piece)
    assert replies_split == replies_whole
    assert split.events == whole.events
    assert split.proto.buffered_bytes <= split.proto.settings.max_buffered_line
