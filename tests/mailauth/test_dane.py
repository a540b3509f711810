"""DANE certificate matching (RFC 7672 section 3, RFC 6698/7671): `check_chain` against chains of certificates
made for each test, which records are usable, the SubjectPublicKeyInfo as the certificate encodes it, and
`peer_chain` reading the chain a real TLS server sent."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import threading
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from postoffice.mailauth.dane import (
    DaneHost,
    Tlsa,
    _spki,
    check_chain,
    classify,
    peer_chain,
    usable,
)
from tests.support.dane_certs import DAY, NOW, Issued, make_ca, make_server, tlsa, write_chain
from tests.support.mail import run_bounded

MX = "mx.example.org"
ROOT = make_ca("Test Root")
INTERMEDIATE = make_ca("Test Intermediate", ROOT)
SERVER = make_server([MX], INTERMEDIATE)
CHAIN = [SERVER.der, INTERMEDIATE.der, ROOT.der]
SELF_SIGNED = make_server([MX])


def dane(*records: Tlsa, names: tuple[str, ...] = (MX,)) -> DaneHost:
    return classify(records, list(names), names[0])


# --- DANE-EE(3) ---------------------------------------------------------------------------------------------


def test_dane_ee_matches_the_leaf_by_key_or_certificate_with_each_digest() -> None:
    for selector, matching in [(1, 1), (0, 1), (1, 2), (0, 0), (1, 0), (0, 2)]:
        record = tlsa(3, selector, matching, SELF_SIGNED)
        assert check_chain(dane(record), [SELF_SIGNED.der]) is None, record


def test_dane_ee_ignores_names_dates_and_issuer() -> None:
    """RFC 7672 section 3.1.1: the record is the whole trust; an expired certificate for another name,
    signed by nobody we know, is authenticated."""
    expired = make_server(["other.example"], not_before=NOW - 60 * DAY, not_after=NOW - 30 * DAY)
    assert check_chain(dane(tlsa(3, 1, 1, expired)), [expired.der]) is None
    assert check_chain(dane(tlsa(3, 0, 1, expired)), [expired.der, ROOT.der]) is None


def test_dane_ee_only_looks_at_the_leaf() -> None:
    reason = check_chain(dane(tlsa(3, 1, 1, INTERMEDIATE)), CHAIN)
    assert reason is not None
    assert "matches no TLSA record" in reason


def test_a_mismatch_says_why() -> None:
    other = make_server([MX])
    reason = check_chain(dane(tlsa(3, 1, 1, other)), [SELF_SIGNED.der])
    assert reason is not None
    assert "3 1 1" in reason


def test_the_same_key_in_a_new_certificate_still_matches_spki_records_only() -> None:
    renewed = make_server([MX], key=SELF_SIGNED.key)
    assert check_chain(dane(tlsa(3, 1, 1, SELF_SIGNED)), [renewed.der]) is None
    assert check_chain(dane(tlsa(3, 0, 1, SELF_SIGNED)), [renewed.der]) is not None


# --- DANE-TA(2) ---------------------------------------------------------------------------------------------


def test_dane_ta_intermediate_by_key_digest_authenticates_the_chain() -> None:
    assert check_chain(dane(tlsa(2, 1, 1, INTERMEDIATE)), CHAIN) is None
    assert check_chain(dane(tlsa(2, 1, 1, INTERMEDIATE)), [SERVER.der, INTERMEDIATE.der]) is None


def test_dane_ta_root_by_certificate_digest() -> None:
    assert check_chain(dane(tlsa(2, 0, 1, ROOT)), CHAIN) is None
    assert check_chain(dane(tlsa(2, 0, 2, ROOT)), CHAIN) is None


def test_dane_ta_needs_the_anchor_in_the_chain_unless_the_record_carries_it() -> None:
    """RFC 7671 section 5.2: with a digest the server must send the anchor; a 2 0 0 record carries the
    whole certificate and a 2 1 0 record the whole key, so the server may leave it out."""
    short = [SERVER.der, INTERMEDIATE.der]
    reason = check_chain(dane(tlsa(2, 0, 1, ROOT)), short)
    assert reason is not None
    assert "no certificate the server sent matches" in reason
    assert check_chain(dane(tlsa(2, 0, 0, ROOT)), short) is None
    assert check_chain(dane(tlsa(2, 1, 0, ROOT)), short) is None
    assert check_chain(dane(tlsa(2, 1, 0, INTERMEDIATE)), [SERVER.der]) is None


def test_dane_ta_checks_the_name_against_the_reference_identifiers() -> None:
    """RFC 7672 section 3.2.2: the anchor alone is not enough, or every customer of a CA named in a TLSA
    record could pose as this server."""
    record = tlsa(2, 1, 1, INTERMEDIATE)
    stranger = make_server(["attacker.example"], INTERMEDIATE)
    reason = check_chain(dane(record), [stranger.der, INTERMEDIATE.der])
    assert reason is not None
    assert MX in reason
    assert "subjectAltName" in reason
    # the TLSA base domain (a CNAME target) is a reference identifier too
    base = make_server(["mx.hosting.example"], INTERMEDIATE)
    assert check_chain(dane(record, names=(MX, "mx.hosting.example")), [base.der, INTERMEDIATE.der]) is None
    assert check_chain(dane(record), [base.der, INTERMEDIATE.der]) is not None


def test_dane_ta_accepts_a_wildcard_in_the_leftmost_label() -> None:
    wildcard = make_server(["*.example.org"], INTERMEDIATE)
    assert check_chain(dane(tlsa(2, 1, 1, INTERMEDIATE)), [wildcard.der, INTERMEDIATE.der]) is None
    deeper = make_server(["*.org"], INTERMEDIATE)
    assert check_chain(dane(tlsa(2, 1, 1, INTERMEDIATE)), [deeper.der, INTERMEDIATE.der]) is not None


def test_dane_ta_refuses_an_expired_leaf_and_accepts_an_expired_anchor() -> None:
    """Dates count below the anchor (path validation), not for the anchor, whose authority is the signed
    TLSA record (RFC 7671 section 5.2)."""
    expired_leaf = make_server([MX], INTERMEDIATE, not_before=NOW - 60 * DAY, not_after=NOW - DAY)
    reason = check_chain(dane(tlsa(2, 1, 1, INTERMEDIATE)), [expired_leaf.der, INTERMEDIATE.der])
    assert reason is not None
    assert "not valid" in reason
    old_root = make_ca("Old Root", not_before=NOW - 400 * DAY, not_after=NOW - 30 * DAY)
    issued = make_server([MX], old_root)
    assert check_chain(dane(tlsa(2, 0, 1, old_root)), [issued.der, old_root.der]) is None
    assert check_chain(dane(tlsa(2, 1, 1, old_root)), [issued.der, old_root.der]) is None


def test_dane_ta_never_names_the_leaf_and_a_leaf_cannot_issue() -> None:
    # a DANE-TA record for the leaf itself is no trust anchor
    reason = check_chain(dane(tlsa(2, 1, 1, SELF_SIGNED)), [SELF_SIGNED.der])
    assert reason is not None
    # the holder of a certificate the anchor issued signs one for another name with its key: refused
    holder = make_server(["attacker.example"], INTERMEDIATE)
    forged = make_server([MX], holder)
    reason = check_chain(dane(tlsa(2, 1, 1, INTERMEDIATE)), [forged.der, holder.der, INTERMEDIATE.der])
    assert reason is not None


def test_dane_ta_wants_a_dns_name_but_no_authority_key_identifier() -> None:
    """The name must be a DNS subjectAltName (no fallback to the subject's common name); the Web PKI rules
    for the extensions hold, except the authorityKeyIdentifier that private CAs often leave out."""
    record = tlsa(2, 1, 1, INTERMEDIATE)
    plain = make_server([MX], INTERMEDIATE, authority_key_id=False)
    assert check_chain(dane(record), [plain.der, INTERMEDIATE.der]) is None
    nameless = make_server([], INTERMEDIATE, common_name=MX)  # the name in the subject only
    reason = check_chain(dane(record), [nameless.der, INTERMEDIATE.der])
    assert reason is not None
    assert "subjectAltName" in reason


def test_dane_ta_chain_with_an_rsa_anchor_and_an_ed25519_leaf() -> None:
    rsa_root = make_ca("RSA Root", kind="rsa")
    leaf = make_server([MX], rsa_root, kind="ed25519")
    assert check_chain(dane(tlsa(2, 1, 1, rsa_root)), [leaf.der, rsa_root.der]) is None


def test_either_usage_may_authenticate() -> None:
    ee_for_other = tlsa(3, 1, 1, make_server([MX]))
    assert check_chain(dane(ee_for_other, tlsa(2, 1, 1, INTERMEDIATE)), CHAIN) is None
    assert check_chain(dane(tlsa(2, 1, 1, ROOT), tlsa(3, 1, 1, SERVER)), [SERVER.der]) is None
    reason = check_chain(dane(ee_for_other, tlsa(2, 1, 1, make_ca("Other"))), CHAIN)
    assert reason is not None
    assert "DANE-EE" in reason
    assert "DANE-TA" in reason


# --- usable records, statuses -------------------------------------------------------------------------------


def test_pkix_usages_and_unknown_parameters_are_unusable() -> None:
    """RFC 7672 section 3.1.3 (PKIX-TA/PKIX-EE), RFC 6698/7671 (unknown values, wrong digest sizes)."""
    digest = hashlib.sha256(b"x").digest()
    unusable = [
        Tlsa(0, 0, 1, digest),
        Tlsa(1, 1, 1, digest),
        Tlsa(4, 1, 1, digest),
        Tlsa(3, 2, 1, digest),
        Tlsa(3, 1, 3, digest),
        Tlsa(3, 1, 1, digest[:31]),
        Tlsa(3, 1, 2, digest),
        Tlsa(3, 0, 0, b"not DER"),
        Tlsa(3, 1, 0, SELF_SIGNED.spki + b"\x00"),
    ]
    for record in unusable:
        assert not usable(record), record
    verdict = classify(unusable, [MX], MX)
    assert verdict.status == "encrypt"
    assert verdict.records == []
    assert verdict.tls_required
    assert "unusable" in verdict.text
    assert check_chain(verdict, [SELF_SIGNED.der]) is not None  # nothing to authenticate with

    good = tlsa(3, 1, 1, SELF_SIGNED)
    mixed = classify([*unusable, good], [MX], MX)
    assert mixed.status == "authenticate"
    assert mixed.records == [good]
    assert len(mixed.published) == len(unusable) + 1
    assert check_chain(mixed, [SELF_SIGNED.der]) is None


def test_no_chain_or_no_records_is_never_authenticated() -> None:
    assert check_chain(dane(tlsa(3, 1, 1, SELF_SIGNED)), []) == "the server sent no certificate"
    none = DaneHost("none", [], [], "")
    assert check_chain(none, [SELF_SIGNED.der]) is not None
    assert not none.tls_required


def test_the_spki_is_cut_out_of_the_certificate_as_it_is_encoded() -> None:
    for issued in (SELF_SIGNED, make_ca("R", kind="rsa"), make_server([MX], kind="ed25519"), SERVER):
        assert _spki(issued.der) == issued.spki


# --- robustness ---------------------------------------------------------------------------------------------

_records = st.builds(
    Tlsa,
    usage=st.sampled_from([0, 1, 2, 3, 4, 255]),
    selector=st.sampled_from([0, 1, 2]),
    matching=st.sampled_from([0, 1, 2, 3]),
    data=st.one_of(
        st.binary(max_size=80),
        st.sampled_from([SERVER.der, SERVER.spki, INTERMEDIATE.der, INTERMEDIATE.spki, ROOT.der]),
        st.sampled_from([tlsa(2, 1, 1, INTERMEDIATE).data, tlsa(3, 0, 1, SERVER).data]),
    ),
)
_certificates = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([SERVER.der, INTERMEDIATE.der, ROOT.der, SELF_SIGNED.der]),
    # a real certificate cut short or with a byte changed
    st.builds(lambda n: SERVER.der[:n], st.integers(0, len(SERVER.der))),
    st.builds(
        lambda i, b: SERVER.der[:i] + bytes([b]) + SERVER.der[i + 1 :],
        st.integers(0, len(SERVER.der) - 1),
        st.integers(0, 255),
    ),
)


@given(records=st.lists(_records, max_size=4), chain=st.lists(_certificates, max_size=4))
def test_random_records_and_garbage_chains_never_raise(records: list[Tlsa], chain: list[bytes]) -> None:
    verdict = classify(records, [MX, "mx.other.example"], MX)
    assert verdict.status in ("authenticate", "encrypt")
    result = check_chain(verdict, chain)
    assert result is None or (isinstance(result, str) and result)
    for certificate in chain:
        try:
            _spki(certificate)
        except ValueError:
            pass


@given(data=st.binary(max_size=300))
def test_a_changed_leaf_never_authenticates(data: bytes) -> None:
    verdict = dane(tlsa(3, 0, 1, SELF_SIGNED), tlsa(2, 1, 1, INTERMEDIATE))
    if data not in (SELF_SIGNED.der, SERVER.der):
        assert check_chain(verdict, [data, INTERMEDIATE.der]) is not None


# --- the chain a real TLS server sends ----------------------------------------------------------------------


def _serve_and_read_chain(tmp_path: Path, leaf: Issued, *chain: Issued) -> list[bytes]:
    """Start a TLS server on loopback with this chain; connect as an SMTP client does for DANE (no PKIX
    verification: DANE decides), and read the chain with `peer_chain`."""
    cert_file, key_file = write_chain(tmp_path, leaf, *chain)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE

    async def exchange() -> list[bytes]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        try:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context, server_hostname=MX
            )
            ssl_object = writer.get_extra_info("ssl_object")
            assert isinstance(ssl_object, ssl.SSLObject)
            chain = peer_chain(ssl_object)
            writer.write(b"x")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            return chain
        finally:
            server.close()
            await server.wait_closed()

    return run_bounded(exchange())


def test_peer_chain_reads_every_certificate_the_server_sent(tmp_path: Path) -> None:
    chain = _serve_and_read_chain(tmp_path, SERVER, INTERMEDIATE)
    assert chain == [SERVER.der, INTERMEDIATE.der]
    assert check_chain(dane(tlsa(2, 1, 1, INTERMEDIATE)), chain) is None
    assert check_chain(dane(tlsa(3, 1, 1, SERVER)), chain) is None


def test_peer_chain_of_a_blocking_socket_and_without_the_chain_api(tmp_path: Path) -> None:
    cert_file, key_file = write_chain(tmp_path, SELF_SIGNED)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    client_end, server_end = socket.socketpair()
    client_end.settimeout(10)
    server_end.settimeout(10)

    def serve() -> None:
        with server_context.wrap_socket(server_end, server_side=True) as tls:
            tls.recv(1)

    server = threading.Thread(target=serve)
    server.start()
    with client_context.wrap_socket(client_end, server_hostname=MX) as tls:
        assert peer_chain(tls) == [SELF_SIGNED.der]
        tls.sendall(b"x")
    server.join(10)

    class LeafOnly:
        """An SSL object without any chain method: only the leaf can be had."""

        def getpeercert(self, binary_form: bool = False) -> bytes:
            return SELF_SIGNED.der

    assert peer_chain(LeafOnly()) == [SELF_SIGNED.der]  # type: ignore[arg-type]
