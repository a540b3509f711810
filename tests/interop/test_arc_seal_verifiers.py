"""Our ARC seals (`mailauth.arc_seal`, RFC 8617 section 5.1) verified by an independent verifier from Debian:
Mail::DKIM's ARC verifier (package libmail-dkim-perl, `Mail::DKIM::ARC::Verifier`), its DNS lookups pointed at
a DNS server on loopback that publishes our key records, as tests/support/dkim_verifiers.py does for DKIM.

What Debian 12's Mail::DKIM (1.20230212) says: an RSA seal of ours passes, alone (cv=none) and as the second
hop on a chain a mailing list sealed with dkimpy (cv=pass); a chain broken before it reached us and sealed by
us cv=fail fails (it checks every seal over all the sets before it, so it calls our cv=fail seal, which signs
our set alone as RFC 8617 section 5.1.2 says, "altered" too). An Ed25519 seal is "invalid (unsupported
algorithm ed25519-sha256)": this Mail::DKIM verifies RSA only, for ARC as for DKIM; on top of an RSA chain
our Ed25519 set is passed over and the chain below judged alone. Hence `arc_seal.sealing_key` prefers RSA."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from postoffice.mailauth.arc_seal import SealingKey, arc_seal
from postoffice.mailauth.dkim_keys import new_key
from tests.support.dns_server import DnsServer, Zones

pytestmark = pytest.mark.interop

TIMEOUT = 60
FORWARDER = "forward.example"
AUTHSERV_ID = "mx.forward.example"
RSA_PEM, RSA_PUBLIC = new_key("rsa")
ED_PEM, ED_PUBLIC = new_key("ed25519")
RSA_KEY = SealingKey(FORWARDER, "po202607r", "rsa", RSA_PEM)
ED_KEY = SealingKey(FORWARDER, "po202607e", "ed25519", ED_PEM)
LIST = "lists.example"
LIST_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
LIST_PEM = LIST_PRIVATE.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
)
LIST_PUBLIC = base64.b64encode(
    LIST_PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
RESULTS = (
    "iprev=pass (mail.sender.example) policy.iprev=192.0.2.1;\r\n\tspf=pass smtp.mailfrom=sender.example;"
    "\r\n\tdkim=pass header.d=sender.example;\r\n\tarc=none;\r\n\tdmarc=pass header.from=sender.example"
)
MESSAGE = (
    "Authentication-Results: mx.forward.example; spf=pass smtp.mailfrom=sender.example\r\n"
    "Received: from mail.sender.example by mx.forward.example\r\n"
    "From: Ann <ann@sender.example>\r\n"
    "To: alias@forward.example\r\n"
    "Subject: =?utf-8?q?Caf=C3=A9?= at ten\r\n"
    "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    "Message-ID: <cafe@sender.example>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Shall we meet at the café at ten?   \r\n"  # trailing white space: relaxed canonicalisation
    "\r\n"
    "-- \r\n"
    "Ann\r\n"
).encode()

MAIL_DKIM_ARC = r"""
use strict;
use warnings;
use Net::DNS;
use Mail::DKIM::DNS;
use Mail::DKIM::ARC::Verifier;
my $port = shift @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(
    nameservers => ['127.0.0.1'], port => $port, recurse => 1, retry => 2,
    udp_timeout => 5, tcp_timeout => 5));
my $arc = Mail::DKIM::ARC::Verifier->new(Strict => 1);
binmode STDIN;
while (my $line = <STDIN>) {
    $line =~ s/\r?\n\z/\r\n/;
    $arc->PRINT($line);
}
$arc->CLOSE;
printf "%s\t%s\n", $arc->result, $arc->result_detail // '';
foreach my $signature ($arc->signatures) {
    printf "%s\t%s\t%s\t%s\n", ref($signature) =~ /Seal$/ ? 'as' : 'ams', $signature->instance,
        $signature->domain, $signature->result_detail // '';
}
"""


def mail_dkim_arc(message: bytes, dns_port: int) -> tuple[str, list[tuple[str, str, str, str]]]:
    """Mail::DKIM's ARC result of `message` ("pass", "fail", ...) and the result of each of its seals and
    message signatures: (as|ams, instance, domain, detail)."""
    if shutil.which("perl") is None:
        raise AssertionError("perl is missing: install libmail-dkim-perl (make deps)")
    proc = subprocess.run(
        ["perl", "-e", MAIL_DKIM_ARC, str(dns_port)],
        input=message,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            "Mail::DKIM failed (is libmail-dkim-perl installed? make deps): "
            + proc.stderr.decode(errors="replace")
        )
    first, *rest = proc.stdout.decode().splitlines()
    signatures = []
    for line in rest:
        kind, instance, domain, detail = (line.split("\t", 3) + [""] * 4)[:4]
        signatures.append((kind, instance, domain, detail))
    return first.split("\t", 1)[0], signatures


def txt(text: str) -> str:
    return " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200))


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    records = [
        (f"{RSA_KEY.selector}._domainkey.{FORWARDER}.", "TXT", txt(f"v=DKIM1; k=rsa; p={RSA_PUBLIC}")),
        (f"{ED_KEY.selector}._domainkey.{FORWARDER}.", "TXT", txt(f"v=DKIM1; k=ed25519; p={ED_PUBLIC}")),
        (f"arc._domainkey.{LIST}.", "TXT", txt(f"v=DKIM1; k=rsa; p={LIST_PUBLIC}")),
    ]
    with DnsServer(Zones(records)) as server:
        yield server.port


def sealed(message: bytes, key: SealingKey, chain: str) -> bytes:
    added = arc_seal(message, key=key, authserv_id=AUTHSERV_ID, results=RESULTS, chain=chain)
    assert added, "not sealed"
    return added + message


def through_list(message: bytes) -> bytes:
    """`message` sealed (i=1) by a mailing list with dkimpy's arc_sign, as another domain's first hop."""
    stamp = b"Authentication-Results: lists.example; dkim=pass header.d=sender.example; dmarc=pass\r\n"
    fields = dkim.arc_sign(stamp + message, b"arc", LIST.encode(), LIST_PEM, LIST.encode())
    assert fields, "dkimpy sealed nothing"
    return b"".join(fields) + stamp + message


def test_mail_dkim_passes_our_rsa_seal_on_a_message_without_a_chain(dns_port: int) -> None:
    result, signatures = mail_dkim_arc(sealed(MESSAGE, RSA_KEY, "none"), dns_port)
    assert result == "pass", signatures
    assert sorted(signatures) == [("ams", "1", FORWARDER, "pass"), ("as", "1", FORWARDER, "pass")]


def test_mail_dkim_passes_our_rsa_seal_as_the_second_hop_of_another_domains_chain(dns_port: int) -> None:
    first = through_list(MESSAGE)
    assert mail_dkim_arc(first, dns_port)[0] == "pass"
    result, signatures = mail_dkim_arc(sealed(first, RSA_KEY, "pass"), dns_port)
    assert result == "pass", signatures
    assert sorted(signatures) == [
        ("ams", "1", LIST, "pass"),
        ("ams", "2", FORWARDER, "pass"),
        ("as", "1", LIST, "pass"),
        ("as", "2", FORWARDER, "pass"),
    ]


def test_mail_dkim_fails_a_chain_we_sealed_cv_fail_and_one_changed_after_our_seal(dns_port: int) -> None:
    broken = through_list(MESSAGE).replace(b"ten?", b"eleven?")
    assert mail_dkim_arc(broken, dns_port)[0] == "fail"
    result, signatures = mail_dkim_arc(sealed(broken, RSA_KEY, "fail"), dns_port)
    assert result == "fail", signatures
    # our seal signs our set alone (RFC 8617 section 5.1.2, as Mail::DKIM's own sealer does for cv=fail), but
    # this verifier checks every seal over all the sets before it: it finds our seal "altered" too
    assert sorted(signatures) == [
        ("ams", "1", LIST, "fail (body has been altered)"),
        ("ams", "2", FORWARDER, "pass"),
        ("as", "1", LIST, "pass"),
        ("as", "2", FORWARDER, "fail (message has been altered)"),
    ]
    changed = sealed(MESSAGE, RSA_KEY, "none").replace(b"ten?", b"eleven?")
    result, signatures = mail_dkim_arc(changed, dns_port)
    assert result == "fail"
    assert ("ams", "1", FORWARDER, "fail (body has been altered)") in signatures


def test_mail_dkim_does_not_know_ed25519_seals(dns_port: int) -> None:
    unsupported = "invalid (unsupported algorithm ed25519-sha256)"
    result, signatures = mail_dkim_arc(sealed(MESSAGE, ED_KEY, "none"), dns_port)
    assert result == "invalid", signatures
    assert sorted(signatures) == [("ams", "1", FORWARDER, unsupported), ("as", "1", FORWARDER, unsupported)]
    # on top of an RSA chain our Ed25519 set is passed over: the chain below is judged as if it were not there
    result, signatures = mail_dkim_arc(sealed(through_list(MESSAGE), ED_KEY, "pass"), dns_port)
    assert result == "pass", signatures
    assert ("as", "2", FORWARDER, unsupported) in signatures
