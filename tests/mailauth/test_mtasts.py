"""MTA-STS (RFC 8461, `mailauth.mtasts`): the TXT record and the policy parsed by the RFC's ABNF (its
examples, every error, fuzzed), MX host matching, fetching a policy from a real HTTPS server on loopback (a
test CA, names from a DNS server on loopback) with every way a fetch fails, discovery and the cache with a
clock the test moves, and the policy this server serves on its https listener (`web.mtasts`)."""

from __future__ import annotations

import asyncio
import datetime
import http.client
import logging
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from postoffice.config import load_config
from postoffice.mailauth.mtasts import (
    MAX_MAX_AGE,
    POLICY_PATH,
    CachedPolicy,
    MemoryPolicyCache,
    MtaSts,
    StsError,
    StsFetchError,
    StsPolicy,
    fetch_policy,
    parse_policy,
    parse_record,
    pick_record,
    policy_id,
    render_policy,
)
from postoffice.net.dns import DnsResolver
from postoffice.net.service import ServiceContext
from postoffice.net.tls import generate_self_signed
from postoffice.store import Domain, MailStore
from postoffice.web.mtasts import policy_app
from tests.integration.harness import DataDir, ServerProcess, cli
from tests.support.dns_server import DnsServer, Zones
from tests.support.mail import run_bounded
from tests.web.client import WebClient
from tests.web.conftest import start_web_server

pytestmark = pytest.mark.timeout(60)

# RFC 8461 section 3.2's example policy
RFC_POLICY = (
    "version: STSv1\r\n"
    "mode: enforce\r\n"
    "mx: mail.example.com\r\n"
    "mx: *.example.net\r\n"
    "mx: backupmx.example.com\r\n"
    "max_age: 604800\r\n"
)
POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mx.fetch.test\r\nmax_age: 86400\r\n"
#: The domains whose policy hosts the test server's certificate names (mta-sts.DOMAIN).
DOMAINS = (
    "fetch.test",
    "same.test",
    "newid.test",
    "failing.test",
    "expiry.test",
    "gone.test",
    "none.test",
    "tempfail.test",
    "refresh.test",
    "shared.test",
    "invalid.test",
    "norecord.test",
)
NOW = 1_800_000_000.0


# -- the TXT record (section 3.1) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=STSv1; id=20160831085700Z;", "20160831085700Z"),  # the RFC's example
        ("v=STSv1; id=20160831085700Z", "20160831085700Z"),
        ("v=STSv1;id=abc", "abc"),
        ("v=STSv1 ;\tid=abc ; ext=1; ", "abc"),  # white space around ";" (erratum 6285), a final ";"
        ("v=STSv1; ext.x_y-z=a:b/c; id=X1", "X1"),  # extensions ignored
        ("v=STSv1; id=first; id=second", "first"),  # the first of a field counts
        ("v=STSv1; id=" + "a" * 32, "a" * 32),
    ],
)
def test_valid_records_give_their_id(text: str, expected: str) -> None:
    assert parse_record(text) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "does not begin with v=STSv1"),
        ("v=STSv2; id=1", "does not begin with v=STSv1"),
        ("v=STSv1id=1", "must be followed by ';'"),
        ("V=STSv1; id=1", "does not begin with v=STSv1"),  # case-sensitive
        (" v=STSv1; id=1", "does not begin with v=STSv1"),
        ("v=STSv1", "no id"),
        ("v=STSv1;", "no id"),
        ("v=STSv1 id=1", "must be followed by ';'"),
        ("v=STSv1; ext=1", "no id"),
        ("v=STSv1; ID=1", "no id"),  # field names are case-sensitive: ID= is an extension
        ("v=STSv1; id=", "not a field"),
        ("v=STSv1; id=" + "a" * 33, "1 to 32 letters and digits"),
        ("v=STSv1; id=a-b", "1 to 32 letters and digits"),
        ("v=STSv1; id=1;;", "not a field"),
        ("v=STSv1;; id=1", "not a field"),
        ("v=STSv1; id=1 ", "not a field"),  # white space only around a ";"
        ("v=STSv1; id=1 x", "not a field"),
        ("v=STSv1; id 1", "not a field"),
        ("v=STSv1; _x=1; id=1", "not a field"),  # a name begins with a letter or digit
        ("v=STSv1; id=1; e=a=b", "not a field"),
        ("v=STSv1; id=\u00e91", "not a field"),
    ],
)
def test_invalid_records_say_why(text: str, error: str) -> None:
    with pytest.raises(StsError, match=re.escape(error)):
        parse_record(text)


def test_the_one_sts_record_is_picked_from_the_txt_records() -> None:
    other = [b"v=spf1 -all"]
    assert pick_record([other, [b"v=STSv1; ", b"id=ab", b"c"]]) == "abc"  # strings joined without spaces
    with pytest.raises(StsError, match="no id"):
        pick_record([[b"v=STSv1"], other])  # "v=STSv1" alone is an STS record, and an invalid one
    with pytest.raises(StsError, match="2 TXT records beginning with v=STSv1: none is used"):
        pick_record([[b"v=STSv1; id=a"], [b"v=STSv1; id=b"]])
    with pytest.raises(StsError, match="no TXT record beginning with v=STSv1"):
        pick_record([other, [b"v=STSv10; id=a"]])
    with pytest.raises(StsError, match="no TXT record"):
        pick_record([])
    with pytest.raises(StsError, match="not a field"):
        pick_record([[b"v=STSv1; id=\xff"]])  # not ASCII: not the ABNF


# -- the policy (section 3.2) --------------------------------------------------------------------------------


def test_the_rfc_example_policy() -> None:
    policy = parse_policy(RFC_POLICY)
    assert policy == StsPolicy(
        "enforce", ("mail.example.com", "*.example.net", "backupmx.example.com"), 604800, RFC_POLICY
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # LF line ends, no final line end, no space after ":", trailing space, unknown keys and extensions
        (
            "version:STSv1\nmode: testing  \nmx: MX.Example.COM\nmax_age: 0\nfoo_bar-1.x: any value ok",
            ("testing", ("mx.example.com",), 0),
        ),
        # mode none needs no mx
        ("version: STSv1\r\nmode: none\r\nmax_age: 86400", ("none", (), 86400)),
        # fields in any order; the first of a field counts (except mx); later ones need only be key: value
        (
            "max_age: 5\nmx: a.test\nmode: enforce\nversion: STSv1\nmode: bogus\nmax_age: x\nmx: *.b.test\n",
            ("enforce", ("a.test", "*.b.test"), 5),
        ),
        # max_age: 1 to 10 digits; above the maximum it is the maximum
        ("version: STSv1\nmode: none\nmax_age: 9999999999\n", ("none", (), MAX_MAX_AGE)),
        # values may hold UTF-8 (sts-policy-vchar), with inner spaces
        ("version: STSv1\nmode: none\nmax_age: 1\nnote: caf\u00e9 au lait\n", ("none", (), 1)),
    ],
)
def test_valid_policies(text: str, expected: tuple[str, tuple[str, ...], int]) -> None:
    policy = parse_policy(text)
    assert (policy.mode, policy.mx, policy.max_age) == expected
    assert policy.text == text


BASE = ["version: STSv1", "mode: enforce", "mx: mail.example.com", "max_age: 604800"]


def lines(*replaced: tuple[int, str | None]) -> str:
    """BASE with line `i` replaced (None: removed), LF line ends."""
    out: list[str | None] = list(BASE)
    for index, line in replaced:
        out[index] = line
    return "".join(f"{line}\n" for line in out if line is not None)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "line 1 is not 'key: value'"),
        ("\n", "line 1 is not 'key: value'"),
        (lines((0, None)), "no version"),
        (lines((1, None)), "no mode"),
        (lines((3, None)), "no max_age"),
        (lines((2, None)), "no mx, which mode enforce needs"),
        (lines((2, None), (1, "mode: testing")), "no mx, which mode testing needs"),
        (lines((0, "version: STSv2")), "version is 'STSv2', not STSv1"),
        (lines((0, "version: stsv1")), "not STSv1"),
        (lines((1, "mode: Enforce")), "not enforce, testing or none"),
        (lines((1, "mode: enforce x")), "not enforce, testing or none"),
        (lines((3, "max_age: -1")), "not 1 to 10 digits"),
        (lines((3, "max_age: 12345678901")), "not 1 to 10 digits"),
        (lines((3, "max_age: 1e6")), "not 1 to 10 digits"),
        (lines((3, "max_age: \u0661")), "not 1 to 10 digits"),  # an Arabic-Indic one: not DIGIT
        (lines((2, "mx: mail.example.com.")), "not a host name"),  # no final dot in the ABNF
        (lines((2, "mx: mail..example.com")), "not a host name"),
        (lines((2, "mx: *.*.example.com")), "not a host name"),
        (lines((2, "mx: mx*.example.com")), "not a host name"),
        (lines((2, "mx: *")), "not a host name"),
        (lines((2, "mx: -mail.example.com")), "not a host name"),
        (lines((2, "mx: mail_1.example.com")), "not a host name"),
        (lines((2, "mx: b\u00fccher.example")), "not a host name"),  # U-labels: A-labels only
        (lines((2, "mx: " + "a" * 64 + ".example")), "not a host name"),
        (lines((0, " version: STSv1")), "line 1 is not 'key: value'"),  # no leading white space
        (lines((0, "version : STSv1")), "line 1 is not 'key: value'"),
        (lines((0, "version STSv1")), "line 1 is not 'key: value'"),
        (lines((0, "version:")), "line 1 is not 'key: value'"),  # a value is required
        (lines((0, "version:\tSTSv1\tx")), "line 1 is not 'key: value'"),  # no tab inside a value
        (lines((0, "version: STSv1\rmode: enforce")), "line 1 is not 'key: value'"),  # a bare CR
        (lines() + "\n", "line 5 is not 'key: value'"),  # no empty line, even at the end
        ("version: STSv1\n\nmode: none\nmax_age: 1\n", "line 2 is not 'key: value'"),
        (lines() + "x\x00: y\n", "line 5 is not 'key: value'"),
        (lines() + "note: \x7f\n", "line 5 is not 'key: value'"),
    ],
)
def test_invalid_policies_say_why(text: str, error: str) -> None:
    with pytest.raises(StsError, match=re.escape(error)):
        parse_policy(text)


@given(st.text())
def test_any_text_is_a_policy_or_an_sts_error(text: str) -> None:
    try:
        policy = parse_policy(text)
    except StsError:
        return
    assert policy.mode in ("enforce", "testing", "none")
    assert 0 <= policy.max_age <= MAX_MAX_AGE


_KEYS = st.sampled_from(["version", "mode", "mx", "max_age", "x", "mode ", "", "v_1.2-3"])
_VALUES = st.sampled_from(["STSv1", "enforce", "testing", "none", "604800", "*.a.test", "a.test", "", " "])
_SEPARATORS = st.sampled_from([": ", ":", " : ", ":\t", "=", ":  "])
_ENDS = st.sampled_from(["\n", "\r\n", "\r", "", "\n\n"])


@given(st.lists(st.tuples(_KEYS, _SEPARATORS, st.one_of(_VALUES, st.text(max_size=8)), _ENDS), max_size=8))
def test_policy_like_text_is_a_policy_or_an_sts_error(fields: list[tuple[str, str, str, str]]) -> None:
    try:
        parse_policy("".join(key + sep + value + end for key, sep, value, end in fields))
    except StsError:
        pass


@given(st.one_of(st.text(), st.text().map(lambda text: "v=STSv1" + text)))
def test_any_text_is_a_record_or_an_sts_error(text: str) -> None:
    try:
        record_id = parse_record(text)
    except StsError:
        return
    assert re.fullmatch(r"[A-Za-z0-9]{1,32}", record_id)


@given(st.lists(st.lists(st.binary(max_size=40), max_size=3), max_size=4))
def test_any_txt_records_give_an_id_or_an_sts_error(records: list[list[bytes]]) -> None:
    try:
        pick_record(records)
    except StsError:
        pass


_LABELS = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_HOSTS = st.lists(_LABELS, min_size=1, max_size=4).map(".".join)


@given(
    st.sampled_from(["enforce", "testing", "none"]),
    st.lists(st.one_of(_HOSTS, _HOSTS.map(lambda host: "*." + host)), min_size=1, max_size=4),
    st.integers(0, MAX_MAX_AGE),
)
def test_a_rendered_policy_reads_back_the_same(mode: str, mx: list[str], max_age: int) -> None:
    text = render_policy(mode, mx, max_age)
    assert text.startswith("version: STSv1\r\n")
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    policy = parse_policy(text)
    assert (policy.mode, policy.mx, policy.max_age) == (mode, tuple(mx), max_age)


def test_render_policy_refuses_what_is_not_a_policy() -> None:
    with pytest.raises(StsError):
        render_policy("strict", ["mail.example.test"], 1)
    with pytest.raises(StsError):
        render_policy("enforce", [], 1)
    with pytest.raises(StsError):
        render_policy("enforce", ["bad name"], 1)
    with pytest.raises(StsError):
        render_policy("enforce", ["mail.example.test"], MAX_MAX_AGE + 1)


def test_the_policy_id_is_short_stable_and_follows_the_text() -> None:
    text = render_policy("testing", ["mail.example.test"], 604800)
    assert policy_id(text) == policy_id(text)
    assert re.fullmatch(r"[A-Z2-7]{20}", policy_id(text))
    assert parse_record(f"v=STSv1; id={policy_id(text)}") == policy_id(text)
    assert policy_id(render_policy("enforce", ["mail.example.test"], 604800)) != policy_id(text)


# -- matching MX hosts (section 4.1) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "matches"),
    [
        ("mail.example.com", True),
        ("MAIL.Example.COM.", True),  # any case, a final dot
        ("backupmx.example.com", True),
        ("mx1.example.net", True),  # "*.example.net": one label
        ("Mx2.EXAMPLE.net.", True),
        ("example.net", False),  # not the domain itself
        ("a.b.example.net", False),  # not two labels
        (".example.net", False),
        ("mail.example.com.evil.test", False),
        ("xmail.example.com", False),
        ("", False),
        ("a..example.net", False),  # not a host name
    ],
)
def test_mx_hosts_are_matched_against_the_patterns(host: str, matches: bool) -> None:
    assert parse_policy(RFC_POLICY).matches(host) is matches


def test_an_mx_host_with_u_labels_is_matched_by_its_a_labels() -> None:
    policy = parse_policy("version: STSv1\nmode: enforce\nmx: *.xn--bcher-kva.example\nmax_age: 1\n")
    assert policy.matches("mx.b\u00fccher.example")
    assert policy.matches("mx.xn--bcher-kva.example")
    assert not policy.matches("mx.bucher.example")


# -- fetching a policy (section 3.3), from a real HTTPS server -----------------------------------------------


@dataclass
class Authority:
    """A certificate authority of the tests' own, and the files of certificates it issued."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    root: Path

    @classmethod
    def make(cls, root: Path) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Postoffice test CA")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        (root / "ca.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(key, certificate, root)

    @property
    def cafile(self) -> Path:
        return self.root / "ca.pem"

    def server_context(self, label: str, names: Sequence[str]) -> ssl.SSLContext:
        """A server context with a certificate for `names`, issued by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = self.root / f"{label}.pem", self.root / f"{label}.key"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return context


@dataclass
class Env:
    ca: Authority
    good: ssl.SSLContext  # names every mta-sts.DOMAIN of DOMAINS
    wrong: ssl.SSLContext  # names another host
    zones: Zones
    dns_port: int

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca.cafile))

    def resolver(self) -> DnsResolver:
        return DnsResolver(["127.0.0.1"], port=self.dns_port, timeout=1, lifetime=2)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    ca = Authority.make(tmp_path_factory.mktemp("mtasts-ca"))
    good = ca.server_context("good", [f"mta-sts.{domain}" for domain in DOMAINS])
    wrong = ca.server_context("wrong", ["www.fetch.test"])
    zones = Zones([(f"mta-sts.{domain}.", "A", "127.0.0.1") for domain in DOMAINS])
    zones.add("_mta-sts.norecord.test.", "TXT", '"v=spf1 -all"')
    with DnsServer(zones) as server:
        yield Env(ca, good, wrong, zones, server.port)


class PolicyHost:
    """An HTTPS server on 127.0.0.1 (an ephemeral port): each request's head is kept in `requests`, and
    answered with `reply` (raw HTTP), or never when `hang` (until the server stops)."""

    def __init__(self, context: ssl.SSLContext, reply: bytes = b"") -> None:
        self.context = context
        self.reply = reply
        self.hang = False
        self.requests: list[bytes] = []
        self._stop = asyncio.Event()
        self.port = 0

    async def __aenter__(self) -> PolicyHost:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            if self.hang:
                await self._stop.wait()
            else:
                writer.write(self.reply)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def answer(
    body: bytes | str = POLICY,
    status: str = "200 OK",
    content_type: str | None = "text/plain",
    headers: Sequence[str] = (),
) -> bytes:
    """A whole HTTP/1.1 answer with a Content-Length."""
    data = body.encode() if isinstance(body, str) else body
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(data)}", "Connection: close", *headers]
    if content_type is not None:
        head.append(f"Content-Type: {content_type}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def fetch(env: Env, host: PolicyHost, domain: str = "fetch.test", **kwargs: Any) -> StsPolicy:
    """`fetch_policy` of `domain` while `host` serves."""

    async def go() -> StsPolicy:
        async with host:
            return await fetch_policy(
                domain, resolver=env.resolver(), context=env.client_context(), port=host.port, **kwargs
            )

    return run_bounded(go(), timeout=20)


def test_a_policy_is_fetched_over_https_with_the_well_known_path(env: Env) -> None:
    host = PolicyHost(env.good, answer(content_type="text/plain; charset=utf-8"))
    policy = fetch(env, host)
    assert (policy.mode, policy.mx, policy.max_age, policy.text) == (
        "enforce",
        ("mx.fetch.test",),
        86400,
        POLICY,
    )
    (request,) = host.requests
    assert request.startswith(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n")
    assert b"\r\nhost: mta-sts.fetch.test\r\n" in request.lower()


def test_a_chunked_answer_is_read_whole(env: Env) -> None:
    chunks = (
        b"".join(f"{len(part):x}\r\n{part}\r\n".encode() for part in (POLICY[:20], POLICY[20:]))
        + b"0\r\n\r\n"
    )
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: Text/Plain\r\n\r\n" + chunks
    assert fetch(env, PolicyHost(env.good, reply)).text == POLICY


def failure(env: Env, host: PolicyHost, domain: str = "fetch.test", **kwargs: Any) -> str:
    with pytest.raises(StsFetchError) as caught:
        fetch(env, host, domain, **kwargs)
    assert str(caught.value) == caught.value.text
    return caught.value.text


def test_a_certificate_for_another_name_is_refused(env: Env) -> None:
    text = failure(env, PolicyHost(env.wrong, answer()))
    assert text.startswith("https://mta-sts.fetch.test/.well-known/mta-sts.txt: 127.0.0.1 port ")
    assert "certificate not accepted" in text
    assert "mismatch" in text.lower()


def test_a_certificate_of_an_unknown_authority_is_refused(env: Env, tmp_path: Path) -> None:
    other_ca = Authority.make(tmp_path)
    text = failure(env, PolicyHost(other_ca.server_context("other", ["mta-sts.fetch.test"]), answer()))
    assert "certificate not accepted" in text


def test_a_redirect_is_not_followed(env: Env) -> None:
    host = PolicyHost(
        env.good, answer("", "301 Moved Permanently", None, ["Location: https://elsewhere.test/p"])
    )
    text = failure(env, host)
    assert "HTTP 301: a redirect to https://elsewhere.test/p, not followed (RFC 8461 section 3.3)" in text
    assert len(host.requests) == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (answer("not here\n", "404 Not Found"), "HTTP 404 Not Found, not 200"),
        (answer(status="204 No Content", body=""), "HTTP 204 No Content, not 200"),
        (answer(status="500 Oops"), "HTTP 500 Oops, not 200"),
        (answer(content_type="text/html"), "media type 'text/html', not text/plain (RFC 8461 section 3.2)"),
        (answer(content_type="text/plainx"), "media type 'text/plainx', not text/plain"),
        (answer(content_type=None), "media type '(none)', not text/plain"),
        (answer("version: STSv1\nmode: enforce\n"), "not a valid policy: the policy has no max_age"),
        (answer(b"version: STSv1\nmode: none\nmax_age: 1\nx: \xff\n"), "the policy is not UTF-8"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nversion: STSv1\n",
            "closed",
        ),
        (b"SMTP/1.0 220 hello\r\n\r\n", "not an HTTP/1.1 answer"),
        (b"", "closed"),
    ],
)
def test_answers_that_are_not_a_policy(env: Env, reply: bytes, error: str) -> None:
    assert error in failure(env, PolicyHost(env.good, reply))


def test_a_policy_larger_than_the_limit_is_refused(env: Env) -> None:
    big = POLICY + "x: " + "y" * 70000 + "\r\n"
    assert "the policy is 70" in failure(env, PolicyHost(env.good, answer(big)))  # by its Content-Length
    assert "more than 50" in failure(env, PolicyHost(env.good, answer()), max_size=50)
    # without a length: read up to the limit, no further
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
    chunked += b"".join(b"4000\r\n" + b"y" * 0x4000 + b"\r\n" for _ in range(5))  # 80 KiB, no end
    assert "the policy is longer than 65536 octets" in failure(env, PolicyHost(env.good, chunked))


def test_a_server_that_does_not_answer_in_time_fails_the_fetch(env: Env) -> None:
    host = PolicyHost(env.good)
    host.hang = True
    text = failure(env, host, timeout=0.5)
    assert text == "https://mta-sts.fetch.test/.well-known/mta-sts.txt: no complete answer within 0.5 seconds"
    assert len(host.requests) == 1


def test_no_address_no_server_and_a_bad_name_fail_the_fetch(env: Env) -> None:
    host = PolicyHost(env.good, answer())
    assert "mta-sts.nowhere.test has no address" in failure(env, host, "nowhere.test")
    env.zones.fail("mta-sts.tempfail.test.")
    try:
        assert "no nameserver answered" in failure(env, host, "tempfail.test")
    finally:
        env.zones.clear("mta-sts.tempfail.test.")
        env.zones.add("mta-sts.tempfail.test.", "A", "127.0.0.1")
    assert "bad domain name" in failure(env, host, "a..test")
    # a domain of 251 octets is a name, but mta-sts. in front of it is not
    assert "> 255 octets" in failure(env, host, ".".join(["a" * 62] * 4))

    async def refused() -> None:
        async with PolicyHost(env.good) as gone:
            port = gone.port
        await fetch_policy("fetch.test", resolver=env.resolver(), context=env.client_context(), port=port)

    with pytest.raises(StsFetchError, match=r"127\.0\.0\.1 port \d+: ConnectionRefusedError"):
        run_bounded(refused())


# -- discovery and the cache (sections 3.3, 5) ---------------------------------------------------------------


def required(policy: StsPolicy | None) -> StsPolicy:
    assert policy is not None
    return policy


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Discovery:
    """An `MtaSts` against the test DNS server and a policy host, with a clock and cache of the test's."""

    env: Env
    domain: str
    host: PolicyHost
    clock: Clock
    cache: MemoryPolicyCache
    sts: MtaSts

    def record(self, record_id: str | None, *extra: str) -> None:
        """Publish `v=STSv1; id=ID` (None: no TXT record), and other TXT records beside it."""
        name = f"_mta-sts.{self.domain}."
        self.env.zones.clear(name)
        if record_id is not None:
            self.env.zones.add(name, "TXT", f'"v=STSv1; id={record_id}"')
        for text in extra:
            self.env.zones.add(name, "TXT", f'"{text}"')

    def serve(self, mode: str = "enforce", max_age: int = 86400, mx: str = "mx") -> str:
        text = render_policy(mode, [f"{mx}.{self.domain}"], max_age)
        self.host.reply = answer(text)
        return text

    async def policy(self) -> StsPolicy | None:
        return await self.sts.policy_for(self.domain)


def discover(env: Env, domain: str, scenario: Any) -> None:
    """Run `scenario(discovery)` with a policy host for `domain` up."""

    async def go() -> None:
        async with PolicyHost(env.good) as host:
            clock, cache = Clock(), MemoryPolicyCache()
            sts = MtaSts(env.resolver(), cache, context=env.client_context(), port=host.port, clock=clock)
            try:
                await scenario(Discovery(env, domain, host, clock, cache, sts))
            finally:
                env.zones.clear(f"_mta-sts.{domain}.")

    run_bounded(go(), timeout=30)


def test_the_same_id_is_not_fetched_again(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(d: Discovery) -> None:
        d.record("one")
        text = d.serve()
        with caplog.at_level(logging.INFO, logger="postoffice.mtasts"):
            first = await d.policy()
            assert first is not None
            assert first.text == text
            d.clock.now += 3600
            assert await d.policy() == first
        assert len(d.host.requests) == 1
        assert d.cache.policies["same.test"] == CachedPolicy("one", first, NOW)
        assert d.cache.policies["same.test"].expires == NOW + 86400
        # one line per fetch, with its outcome
        assert [r.getMessage() for r in caplog.records] == [
            "mta-sts: same.test: fetched policy one: mode enforce, mx mx.same.test, max_age 86400"
        ]

    discover(env, "same.test", scenario)


def test_a_new_id_is_fetched_at_once(env: Env) -> None:
    async def scenario(d: Discovery) -> None:
        d.record("one")
        d.serve(mx="old")
        assert required(await d.policy()).mx == ("old.newid.test",)
        d.record("two")
        d.serve(mx="new")
        d.clock.now += 60
        assert required(await d.policy()).mx == ("new.newid.test",)
        assert d.cache.policies["newid.test"].policy_id == "two"
        assert len(d.host.requests) == 2

    discover(env, "newid.test", scenario)


def test_a_failed_fetch_keeps_the_cached_policy_and_waits_before_trying_again(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(d: Discovery) -> None:
        d.record("one")
        d.serve(mx="old")
        cached = await d.policy()
        d.record("two")
        d.host.reply = answer("broken", "500 Internal Server Error")
        d.clock.now += 60
        with caplog.at_level(logging.INFO, logger="postoffice.mtasts"):
            assert await d.policy() == cached  # section 3.3: the cached policy still applies
        assert len(d.host.requests) == 2
        (line,) = caplog.records
        assert line.levelno == logging.WARNING  # a policy in force could not be refreshed
        assert line.getMessage().startswith(
            "mta-sts: failing.test: fetching policy two failed: https://mta-sts.failing.test/.well-known/"
            "mta-sts.txt: HTTP 500 Internal Server Error, not 200; the cached policy one (mode enforce) "
            "applies until "
        )
        # not fetched again for five minutes (section 3.3), then fetched
        d.clock.now += 299
        assert await d.policy() == cached
        assert len(d.host.requests) == 2
        d.serve(mx="new")
        d.clock.now += 2
        assert required(await d.policy()).mx == ("new.failing.test",)
        assert len(d.host.requests) == 3

    discover(env, "failing.test", scenario)


def test_an_expired_policy_no_longer_applies_and_is_fetched_anew(env: Env) -> None:
    async def scenario(d: Discovery) -> None:
        d.record("one")
        d.serve(max_age=1000)
        assert await d.policy() is not None
        d.host.reply = answer("gone", "404 Not Found")
        d.clock.now += 1000  # expired: the same id is fetched again, and the failure leaves no policy
        assert await d.policy() is None
        assert len(d.host.requests) == 2
        d.clock.now += 300
        d.serve(max_age=1000)
        assert await d.policy() is not None
        assert len(d.host.requests) == 3

    discover(env, "expiry.test", scenario)


def test_a_txt_record_that_goes_away_leaves_the_policy_until_it_expires(env: Env) -> None:
    async def scenario(d: Discovery) -> None:
        d.record("one")
        d.serve(max_age=5000)
        cached = await d.policy()
        assert cached is not None
        d.record(None)  # section 5.1: no record is not enough to drop a cached policy
        d.clock.now += 4999
        assert await d.policy() == cached
        d.record("one", "v=STSv1; id=two")  # two STS records: none is valid, the same
        assert await d.policy() == cached
        d.record(None)
        d.clock.now += 1
        assert await d.policy() is None
        assert len(d.host.requests) == 1

    discover(env, "gone.test", scenario)


def test_mode_none_is_no_policy_but_is_kept(env: Env) -> None:
    async def scenario(d: Discovery) -> None:
        d.record("one")
        d.serve()
        assert await d.policy() is not None
        d.record("two")
        d.serve(mode="none")
        assert await d.policy() is None
        assert d.cache.policies["none.test"].policy.mode == "none"
        assert d.cache.policies["none.test"].policy_id == "two"
        d.record(None)
        assert await d.policy() is None  # the cached "none" replaced the enforce policy
        assert len(d.host.requests) == 2

    discover(env, "none.test", scenario)


def test_a_dns_failure_keeps_the_cached_policy(env: Env) -> None:
    async def scenario(d: Discovery) -> None:
        assert await d.policy() is None  # nothing: no record, nothing cached, nothing fetched
        d.record("one")
        d.serve()
        cached = await d.policy()
        d.env.zones.fail("_mta-sts.tempfail.test.")
        try:
            d.clock.now += 100
            assert await d.policy() == cached
            d.clock.now += 86400
            assert await d.policy() is None  # expired
        finally:
            d.env.zones.clear("_mta-sts.tempfail.test.")
        assert len(d.host.requests) == 1

    discover(env, "tempfail.test", scenario)


def test_a_policy_in_use_is_refreshed_after_a_day(env: Env) -> None:
    async def scenario(d: Discovery) -> None:
        d.record("one")
        d.serve(max_age=7 * 86400)
        first = await d.policy()
        d.clock.now += 86399
        assert await d.policy() == first
        assert len(d.host.requests) == 1
        d.clock.now += 1  # a day: fetched again with the same id, and kept from now
        assert await d.policy() == first
        assert len(d.host.requests) == 2
        assert d.cache.policies["refresh.test"].fetched == NOW + 86400
        d.host.reply = answer("down", "503 Service Unavailable")
        d.clock.now += 86400  # a failed refresh keeps the policy
        assert await d.policy() == first
        assert len(d.host.requests) == 3

    discover(env, "refresh.test", scenario)


def test_deliveries_at_the_same_time_share_one_fetch(env: Env) -> None:
    async def scenario(d: Discovery) -> None:
        d.record("one")
        d.serve()
        policies = await asyncio.gather(*(d.policy() for _ in range(5)))
        assert len({id(p) for p in policies}) == 1
        assert policies[0] is not None
        assert len(d.host.requests) == 1

    discover(env, "shared.test", scenario)


def test_no_valid_record_means_no_fetch_and_no_policy(env: Env) -> None:
    async def scenario(d: Discovery) -> None:
        d.serve()
        for texts in (("v=STSv1; id=a-b",), ("v=STSv1; id=a", "v=STSv1; id=b"), ()):
            d.record(None, *texts)
            assert await d.policy() is None
        assert await d.sts.policy_for("norecord.test") is None  # only other TXT records
        assert await d.sts.policy_for("a..b") is None  # not a domain name: never raises
        assert await d.sts.policy_for("") is None
        assert d.host.requests == []

    discover(env, "invalid.test", scenario)


# -- the policy this server serves (web.mtasts) --------------------------------------------------------------


class _Domains:
    async def list_domains(self) -> list[Domain]:
        return [Domain(1, "example.test")]


def asgi_get(
    ctx: ServiceContext, host: bytes, scheme: str = "https"
) -> tuple[int, dict[bytes, bytes], bytes]:
    """GET the policy path from `policy_app` in this process."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "method": "GET",
        "path": POLICY_PATH,
        "raw_path": POLICY_PATH.encode(),
        "root_path": "",
        "scheme": scheme,
        "query_string": b"",
        "headers": [(b"host", host)],
        "server": ("127.0.0.1", 443),
        "http_version": "1.1",
    }

    async def get() -> None:
        await policy_app(ctx)(scope, receive, send)

    run_bounded(get())
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def context_with(tmp_path: Path, section: str) -> ServiceContext:
    generate_self_signed("mail.example.test", tmp_path / "cert.pem", tmp_path / "key.pem")
    path = tmp_path / "postoffice.toml"
    path.write_text(
        '[server]\nhostname = "mail.example.test"\n'
        f'[tls]\ncertificate = "{tmp_path / "cert.pem"}"\nprivate_key = "{tmp_path / "key.pem"}"\n' + section
    )
    return ServiceContext(load_config(path), cast(MailStore, _Domains()), cast(Any, None))


def test_the_served_policy_follows_the_settings_and_is_https_only(tmp_path: Path) -> None:
    ctx = context_with(
        tmp_path, '[mta_sts]\nmode = "enforce"\nmx = ["Mail.Example.Test.", "*.mx.example.test"]\n'
    )
    status, headers, body = asgi_get(ctx, b"MTA-STS.example.test.:8443")
    assert status == 200
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert headers[b"cache-control"] == b"max-age=300"
    assert body.decode() == render_policy("enforce", ["mail.example.test", "*.mx.example.test"], 604800)
    assert body.startswith(b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\n")
    assert asgi_get(ctx, b"mta-sts.example.test", scheme="http")[0] == 404
    assert asgi_get(ctx, b"mta-sts.other.test")[0] == 404
    assert asgi_get(ctx, b"example.test")[0] == 404
    assert asgi_get(ctx, b"mta-sts.")[0] == 404
    off = context_with(tmp_path, '[mta_sts]\nmode = "off"\n')
    assert asgi_get(off, b"mta-sts.example.test")[0] == 404


def test_bad_mta_sts_settings_are_refused(tmp_path: Path) -> None:
    from postoffice.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        context_with(
            tmp_path, '[mta_sts]\nmode = "strict"\nmax_age = 31557601\nmx = ["ok.test", "bad name", "*"]\n'
        )
    keys = sorted(problem.key for problem in caught.value.problems)
    assert keys == ["mta_sts.max_age", "mta_sts.mode", "mta_sts.mx[1]", "mta_sts.mx[2]"]


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataDir, ServerProcess]]:
    data, server = start_web_server(tmp_path_factory.mktemp("mtasts-web"))
    try:
        yield data, server
    finally:
        server.stop()


@pytest.mark.integration
def test_the_running_server_serves_the_policy_its_dns_record_announces(
    web_server: tuple[DataDir, ServerProcess], tmp_path: Path
) -> None:
    data, process = web_server
    client = WebClient.of(process, data)
    reply = client.request("GET", POLICY_PATH, headers={"Host": "mta-sts.example.test"})
    assert reply.status == 200
    assert reply.header("content-type") == "text/plain; charset=utf-8"
    policy = parse_policy(reply.text)
    assert (policy.mode, policy.mx, policy.max_age) == ("testing", ("localhost",), 604800)
    # the id `postoffice dns records` publishes is this text's
    records = cli("dns", "records", "example.test", config=data.config)
    announced = rf'^_mta-sts\.example\.test\.\s+IN TXT\s+"v=STSv1; id={policy_id(reply.text)}"$'
    assert re.search(announced, records, re.M)
    # the Host decides: any case and a port; another domain, or the webmail's own name, gets 404
    port = process.port("https")
    assert client.request("GET", POLICY_PATH, headers={"Host": f"MTA-STS.Example.Test:{port}"}).status == 200
    assert client.request("GET", POLICY_PATH, headers={"Host": "mta-sts.other.test"}).status == 404
    assert client.request("GET", POLICY_PATH, headers={"Host": "localhost"}).status == 404
    # plain HTTP serves no policy: it redirects to HTTPS like every other path
    conn = http.client.HTTPConnection("127.0.0.1", process.port("http"), timeout=30)
    try:
        conn.request("GET", POLICY_PATH, headers={"Host": "mta-sts.example.test"})
        plain = conn.getresponse()
        assert plain.status == 301
        assert plain.headers["location"] == f"https://mta-sts.example.test:{port}{POLICY_PATH}"
        assert b"STSv1" not in plain.read()
    finally:
        conn.close()
    # and our own client reads it (the certificate is for localhost: the name check is off for this one)
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    context.check_hostname = False
    with DnsServer(Zones([("mta-sts.example.test.", "A", "127.0.0.1")])) as dns_server:
        resolver = DnsResolver(["127.0.0.1"], port=dns_server.port, timeout=1, lifetime=2)
        fetched = run_bounded(fetch_policy("example.test", resolver=resolver, context=context, port=port))
    assert fetched == policy
