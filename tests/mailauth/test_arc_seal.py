"""ARC sealing (RFC 8617 section 5.1; `mailauth.arc_seal`): our sets verified by our own validator
(`mailauth.arc`, through our resolver) and by dkimpy's `arc_verify`, with the keys published on a DNS server
on loopback: a first seal (cv=none), a second hop on a chain another domain sealed with dkimpy (cv=pass), a
chain broken before it reached us (cv=fail, the seal covering only our set, section 5.1.2), the limits and the
inconsistent calls that are not sealed, and arbitrary bytes that never raise. Ed25519 seals are written but
dkimpy (so our validator too) validates ARC with rsa-sha256 only: they fail there, and pass once dkimpy is
told the algorithm. The independent verifier (Mail::DKIM) is tests/interop/test_arc_seal_verifiers.py."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from dkim.canonicalization import CanonicalizationPolicy
from hypothesis import given, settings
from hypothesis import strategies as st

import postoffice.mailauth.arc_seal as arc_seal_module
from postoffice.mailauth.arc import ArcResult, verify_chain
from postoffice.mailauth.arc_seal import SEALED_FIELDS, SealingKey, arc_seal, arc_seal_async, sealing_key
from postoffice.mailauth.dkim_keys import new_key
from postoffice.mailauth.dkim_verify import DKIMPY_LOG, KeyLookup
from postoffice.net.dns import DnsResolver
from postoffice.store import DkimKey
from tests.support.dns_server import DnsServer, Zones
from tests.support.mail import run_bounded

FORWARDER = "forward.example"
AUTHSERV_ID = "mx.forward.example"
RSA_PEM, RSA_PUBLIC = new_key("rsa")
ED_PEM, ED_PUBLIC = new_key("ed25519")
RSA_KEY = SealingKey(FORWARDER, "po202607r", "rsa", RSA_PEM)
ED_KEY = SealingKey(FORWARDER, "po202607e", "ed25519", ED_PEM)
# the first hop of a two-hop chain: a mailing list sealing with dkimpy's own arc_sign (PKCS #1, as it reads)
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
    "\r\n\tdkim=pass header.d=sender.example header.s=sel header.a=rsa-sha256;\r\n\tarc=none;"
    "\r\n\tdmarc=pass header.from=sender.example"
)
MESSAGE = (
    b"Authentication-Results: mx.forward.example;\r\n\tspf=pass smtp.mailfrom=sender.example\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=sender.example; s=sel; h=from:subject; bh=x; b=y\r\n"
    b"Received: from mail.sender.example by mx.forward.example\r\n"
    b"From: Ann <ann@sender.example>\r\nTo: alias@forward.example\r\nCc: bob@other.example\r\n"
    b"Subject: Lunch\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <lunch@sender.example>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nX-Mailer: test\r\n\r\n"
    b"Shall we have lunch?  \r\n\r\n-- \r\nAnn\r\n"
)
RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")


def txt(text: str) -> str:
    return " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200))


RECORDS = [
    (f"{RSA_KEY.selector}._domainkey.{FORWARDER}.", "TXT", txt(f"v=DKIM1; k=rsa; p={RSA_PUBLIC}")),
    (f"{ED_KEY.selector}._domainkey.{FORWARDER}.", "TXT", txt(f"v=DKIM1; k=ed25519; p={ED_PUBLIC}")),
    (f"arc._domainkey.{LIST}.", "TXT", txt(f"v=DKIM1; k=rsa; p={LIST_PUBLIC}")),
]


@pytest.fixture(scope="module")
def resolver() -> Iterator[DnsResolver]:
    with DnsServer(Zones(RECORDS)) as server:
        yield DnsResolver(["127.0.0.1"], port=server.port, timeout=1, lifetime=2)


def seal(message: bytes, key: SealingKey = RSA_KEY, chain: str = "none", results: str = RESULTS) -> bytes:
    return arc_seal(message, key=key, authserv_id=AUTHSERV_ID, results=results, chain=chain)


def dkimpy(message: bytes, resolver: DnsResolver) -> tuple[bytes | None, str]:
    """dkimpy's `arc_verify` of `message`: (cv result, reason)."""
    cv, _checked, reason = dkim.arc_verify(message, logger=DKIMPY_LOG, dnsfunc=KeyLookup(resolver))
    return cv, str(reason)


def fields(data: bytes) -> list[tuple[str, str]]:
    """The header fields of `data` (a block of fields), top first: (name, value unfolded and stripped)."""
    headers, _body = dkim.rfc822_parse(data + b"\r\n")
    return [(name.decode(), re.sub(r"\r\n", "", value.decode()).strip()) for name, value in headers]


def tags(value: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in re.sub(r"\s+", "", value).split(";") if part)


def list_seal(message: bytes) -> bytes:
    """`message` as the mailing list passes it on: its Authentication-Results (dkimpy copies it into the AAR),
    then its ARC set (i=1, cv=none) above."""
    stamp = b"Authentication-Results: lists.example; dkim=pass header.d=sender.example; dmarc=pass\r\n"
    sealed = dkim.arc_sign(stamp + message, b"arc", LIST.encode(), LIST_PEM, LIST.encode())
    assert sealed, "dkimpy sealed nothing"
    return b"".join(sealed) + stamp + message


# -- a first seal --------------------------------------------------------------------------------------------


def test_an_unsealed_message_is_sealed_cv_none_and_both_validators_pass(resolver: DnsResolver) -> None:
    added = seal(MESSAGE)
    assert [name for name, _ in fields(added)] == [
        "ARC-Seal",
        "ARC-Message-Signature",
        "ARC-Authentication-Results",
    ]
    assert verify_chain(added + MESSAGE, resolver) == ArcResult("pass", 1, (FORWARDER,), "", oldest_pass=1)
    assert dkimpy(added + MESSAGE, resolver) == (dkim.CV_Pass, "success")
    seal_tags = tags(fields(added)[0][1])
    assert {k: v for k, v in seal_tags.items() if k not in ("b", "t")} == {
        "i": "1",
        "cv": "none",
        "a": "rsa-sha256",
        "d": FORWARDER,
        "s": RSA_KEY.selector,
    }


def test_the_aar_carries_instance_1_our_authserv_id_and_our_results_with_their_comments() -> None:
    aar = fields(seal(MESSAGE))[2][1]
    unfolded = re.sub(r"\s+", " ", RESULTS.replace("\r\n", ""))
    assert aar == f"i=1; {AUTHSERV_ID}; {unfolded}"
    assert "(mail.sender.example)" in aar  # dkimpy's arc_sign would have dropped the comment
    # every line of what we write stays within 78 characters where white space allows folding
    assert all(len(line) <= 78 for line in seal(MESSAGE).split(b"\r\n"))


def test_empty_results_are_none_and_line_breaks_in_them_cannot_add_a_field(resolver: DnsResolver) -> None:
    assert fields(seal(MESSAGE, results=""))[2][1] == f"i=1; {AUTHSERV_ID}; none"
    added = seal(MESSAGE, results="spf=pass smtp.mailfrom=a.example\r\nX-Injected: yes\n\rdmarc=pass")
    assert [name for name, _ in fields(added)][2:] == ["ARC-Authentication-Results"]
    assert (
        fields(added)[2][1]
        == f"i=1; {AUTHSERV_ID}; spf=pass smtp.mailfrom=a.example X-Injected: yes dmarc=pass"
    )
    assert verify_chain(added + MESSAGE, resolver).result == "pass"


def test_the_message_signature_covers_the_recommended_fields_and_no_results_or_arc_field() -> None:
    ams = tags(fields(seal(MESSAGE))[1][1])
    assert {k: ams[k] for k in ("i", "a", "c", "d", "s")} == {
        "i": "1",
        "a": "rsa-sha256",
        "c": "relaxed/relaxed",
        "d": FORWARDER,
        "s": RSA_KEY.selector,
    }
    signed = ams["h"].split(":")
    assert signed == [
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "dkim-signature",
        "from",  # once more than present: a From added later breaks the signature
    ]
    assert set(signed) <= set(SEALED_FIELDS)
    assert not {"authentication-results", "arc-seal", "received", "x-mailer"} & set(signed)
    assert not {"v", "l", "x"} & set(ams)
    assert abs(int(ams["t"]) - int(tags(fields(seal(MESSAGE))[0][1])["t"])) <= 1


def test_a_refolded_forward_still_validates_but_a_changed_one_does_not(resolver: DnsResolver) -> None:
    sealed = seal(MESSAGE) + MESSAGE
    refolded = sealed.replace(b"Subject: Lunch", b"Subject:   Lunch  ").replace(b"lunch?  ", b"lunch?")
    assert verify_chain(refolded, resolver).result == "pass"
    changed = sealed.replace(b"Shall we", b"Shan't we")
    assert verify_chain(changed, resolver).result == "fail"
    assert dkimpy(changed, resolver)[0] == dkim.CV_Fail


# -- Ed25519 -------------------------------------------------------------------------------------------------


def test_an_ed25519_seal_fails_at_dkimpy_based_validators_ours_included(resolver: DnsResolver) -> None:
    sealed = seal(MESSAGE, key=ED_KEY) + MESSAGE
    assert tags(fields(sealed)[0][1])["a"] == "ed25519-sha256"
    # dkimpy validates ARC with rsa-sha256 only (its ARC_HASH_ALGORITHMS): why `sealing_key` prefers RSA
    assert dkimpy(sealed, resolver) == (dkim.CV_Fail, "unknown signature algorithm: b'ed25519-sha256'")
    result = verify_chain(sealed, resolver)
    assert (result.result, result.sealers) == ("fail", (FORWARDER,))


def test_an_ed25519_seal_validates_where_the_verifier_knows_the_algorithm(
    resolver: DnsResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dkimpy verifies Ed25519 DKIM signatures (RFC 8463); told that ARC may use it, it checks our seal with
    # the same code path, DNS record and canonicalisation as an RSA one
    monkeypatch.setitem(dkim.ARC_HASH_ALGORITHMS, b"ed25519-sha256", hashlib.sha256)
    first = seal(MESSAGE, key=ED_KEY) + MESSAGE
    assert dkimpy(first, resolver) == (dkim.CV_Pass, "success")
    second = seal(first, key=ED_KEY, chain="pass") + first
    assert verify_chain(second, resolver) == ArcResult("pass", 2, (FORWARDER, FORWARDER), "", oldest_pass=1)
    assert dkimpy(second.replace(b"lunch?", b"dinner?"), resolver)[0] == dkim.CV_Fail


# -- a second hop, a broken chain ----------------------------------------------------------------------------


def test_a_chain_another_domain_sealed_gets_our_set_cv_pass_and_both_sets_validate(
    resolver: DnsResolver,
) -> None:
    first = list_seal(MESSAGE)
    arriving = verify_chain(first, resolver)
    assert (arriving.result, arriving.sealers) == ("pass", (LIST,))
    added = seal(first, chain=arriving.result, results=RESULTS.replace("arc=none", "arc=pass"))
    assert tags(fields(added)[0][1])["i"] == "2"
    assert tags(fields(added)[0][1])["cv"] == "pass"
    assert fields(added)[2][1].startswith(f"i=2; {AUTHSERV_ID}; iprev=pass")
    result = verify_chain(added + first, resolver)
    assert result == ArcResult("pass", 2, (LIST, FORWARDER), "", oldest_pass=1)
    assert dkimpy(added + first, resolver) == (dkim.CV_Pass, "success")


def _seal_signature_verifies(scope: list[tuple[bytes, bytes]], seal_field: tuple[bytes, bytes]) -> bool:
    """Whether the RSA ARC-Seal `seal_field` (name, value) signs `scope` (the fields before it, in order)
    followed by itself with b= empty, relaxed (RFC 8617 section 5.1.1)."""
    name, value = seal_field
    signature = base64.b64decode(re.sub(rb"\s+", b"", tags(value.decode())["b"].encode()))
    empty = re.sub(rb"(^|;)(\s*b=)[^;]*", rb"\1\2", value)
    [(canonical_name, canonical_value)] = RELAXED.canonicalize_headers([(name, empty)])
    data = b"".join(n + b":" + v for n, v in RELAXED.canonicalize_headers(scope))
    data += canonical_name + b":" + canonical_value.rstrip(b"\r\n")
    public: Any = serialization.load_pem_private_key(RSA_PEM.encode(), password=None).public_key()
    try:
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except Exception:
        return False
    return True


def test_a_chain_broken_before_us_is_sealed_cv_fail_over_our_set_alone(resolver: DnsResolver) -> None:
    broken = list_seal(MESSAGE).replace(b"lunch?", b"dinner?")
    assert verify_chain(broken, resolver).result == "fail"
    added = seal(broken, chain="fail", results=RESULTS.replace("arc=none", "arc=fail"))
    assert {k: tags(fields(added)[0][1])[k] for k in ("i", "cv")} == {"i": "2", "cv": "fail"}
    assert verify_chain(added + broken, resolver).result == "fail"
    # dkimpy stops at our cv=fail (RFC 8617 section 5.2 step 2): the chain ended there
    assert dkimpy(added + broken, resolver) == (None, "ARC-Seal[2] reported failure, the chain is terminated")
    # section 5.1.2: the seal signs our AAR and AMS only, as if our set were the only one
    headers, _body = dkim.rfc822_parse(added + broken)
    ours = [(bytes(n), bytes(v)) for n, v in headers[:3]]
    earlier = [(bytes(n), bytes(v)) for n, v in headers if n.lower().startswith(b"arc-")][3:]
    assert _seal_signature_verifies([ours[2], ours[1]], ours[0])
    assert not _seal_signature_verifies([earlier[2], earlier[1], earlier[0], ours[2], ours[1]], ours[0])


def test_a_pass_seal_signs_every_earlier_set_oldest_first(resolver: DnsResolver) -> None:
    first = list_seal(MESSAGE)
    added = seal(first, chain="pass")
    headers, _body = dkim.rfc822_parse(added + first)
    ours = [(bytes(n), bytes(v)) for n, v in headers[:3]]
    aar, ams, seal_1 = (
        next((bytes(n), bytes(v)) for n, v in headers[3:] if n.lower() == name)
        for name in (b"arc-authentication-results", b"arc-message-signature", b"arc-seal")
    )
    assert _seal_signature_verifies([aar, ams, seal_1, ours[2], ours[1]], ours[0])
    assert not _seal_signature_verifies([ours[2], ours[1]], ours[0])


def test_a_chain_that_already_ended_with_cv_fail_is_not_sealed_again(
    resolver: DnsResolver, caplog: pytest.LogCaptureFixture
) -> None:
    broken = list_seal(MESSAGE).replace(b"lunch?", b"dinner?")
    ended = seal(broken, chain="fail") + broken
    assert verify_chain(ended, resolver).result == "fail"
    with caplog.at_level(logging.INFO, logger="postoffice.mailauth"):
        assert seal(ended, chain="fail") == b""
    assert "i=2 says cv=fail: the chain ended there (RFC 8617 section 5.1)" in caplog.text


def test_fifty_sets_validate_and_a_fifty_first_is_not_added(
    resolver: DnsResolver, caplog: pytest.LogCaptureFixture
) -> None:
    message = MESSAGE
    for n in range(50):
        added = seal(message, chain="pass" if n else "none")
        assert tags(fields(added)[0][1])["i"] == str(n + 1)
        message = added + message
    result = verify_chain(message, resolver)
    assert (result.result, result.instances, result.oldest_pass) == ("pass", 50, 1)
    with caplog.at_level(logging.INFO, logger="postoffice.mailauth"):
        assert seal(message, chain="pass") == b""
    assert "the message has 50 ARC sets (RFC 8617 section 4.2.1: at most 50)" in caplog.text


# -- calls that are not sealed -------------------------------------------------------------------------------


def test_inconsistent_or_unusable_calls_are_not_sealed_and_say_why(caplog: pytest.LogCaptureFixture) -> None:
    sealed_once = seal(MESSAGE) + MESSAGE
    wrong_key = SealingKey(FORWARDER, "x", "rsa", ED_PEM)
    with caplog.at_level(logging.INFO, logger="postoffice.mailauth"):
        assert seal(sealed_once, chain="temperror") == b""  # not a cv= value: the caller decides (fail?)
        assert seal(sealed_once, chain="none") == b""
        assert seal(MESSAGE.replace(b"From: Ann <ann@sender.example>\r\n", b"")) == b""
        assert arc_seal(MESSAGE, key=RSA_KEY, authserv_id="mx example", results="", chain="none") == b""
        assert seal(MESSAGE, key=wrong_key) == b""
        assert seal(MESSAGE, key=SealingKey(FORWARDER, "x", "dsa", RSA_PEM)) == b""
        assert seal(b"\tfolded before any field\r\n\r\n") == b""
    text = caplog.text
    assert "the chain's result is 'temperror'" in text
    assert "the message has 1 ARC sets but the chain is none" in text
    assert "no From field" in text
    assert "'mx example' is not an authserv-id" in text
    assert "sealing as d=forward.example s=x failed; not sealed: the key is not an 'rsa' key" in text
    assert "PRIVATE KEY" not in text
    assert RSA_PEM[40:80] not in text


def test_a_message_without_arc_fields_is_sealed_cv_none_whatever_the_chain_says(
    resolver: DnsResolver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="postoffice.mailauth"):
        added = seal(MESSAGE, chain="pass")
    assert tags(fields(added)[0][1])["cv"] == "none"
    assert "no ARC set but the chain is 'pass': sealed cv=none" in caplog.text
    assert verify_chain(added + MESSAGE, resolver).result == "pass"


def test_a_pass_on_an_incomplete_chain_is_not_sealed(caplog: pytest.LogCaptureFixture) -> None:
    sealed_once = seal(MESSAGE) + MESSAGE
    without_aar = re.sub(rb"ARC-Authentication-Results: [^\r]*\r\n( [^\r]*\r\n)*", b"", sealed_once)
    with caplog.at_level(logging.WARNING, logger="postoffice.mailauth"):
        assert seal(without_aar, chain="pass") == b""
    assert "the chain is pass but its sets are not complete and unique" in caplog.text


# -- the key, the thread -------------------------------------------------------------------------------------


def test_the_sealing_key_is_the_active_rsa_key_else_none() -> None:
    def key(selector: str, algorithm: str, state: str = "active", private: str = "pem") -> DkimKey:
        return DkimKey(0, FORWARDER, selector, algorithm, "p", private, state)

    pair = [key("po202607e", "ed25519", private=ED_PEM), key("po202607r", "rsa", private=RSA_PEM)]
    assert sealing_key(pair) == RSA_KEY
    assert "PRIVATE" not in repr(sealing_key(pair))
    rotating = [key("po202601r", "rsa", "retiring"), key("po202607r2", "rsa", "pending"), pair[0]]
    assert sealing_key(rotating) is None  # Ed25519 seals fail at most verifiers: better none
    assert (
        sealing_key([key("po202601r", "rsa", "removed", ""), key("po202601e", "ed25519", "retiring")]) is None
    )
    assert sealing_key([]) is None


def test_the_async_form_seals_in_a_worker_thread(
    resolver: DnsResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    real = arc_seal_module.arc_seal

    def recording(message: bytes, **kwargs: Any) -> bytes:
        threads.append(threading.current_thread())
        return real(message, **kwargs)

    monkeypatch.setattr(arc_seal_module, "arc_seal", recording)
    added = run_bounded(
        arc_seal_async(MESSAGE, key=RSA_KEY, authserv_id=AUTHSERV_ID, results=RESULTS, chain="none")
    )
    assert len(threads) == 1
    assert threads[0] is not threading.main_thread()
    assert verify_chain(added + MESSAGE, resolver).result == "pass"


# -- arbitrary input -----------------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        b"From: a@b.example\r\n",
        b"ARC-Seal: i=1; cv=pass; a=rsa-sha256; d=x; s=y; b=z\r\n",
        b"ARC-Seal: i=99999999999999999999; cv=fail\r\n",
        b"ARC-Message-Signature: i=1; a=rsa-sha256; h=from; bh=; b=\r\n",
        b"ARC-Authentication-Results: i=1; x; none\r\n",
        b"ARC-Authentication-Results: i=\r\n",
        b"Subject: \xff\xfe\r\n",
        b" continued\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b"body\r\n",
        b"no colon here\r\n",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=600),
        st.lists(_PIECES, max_size=12).map(b"".join),
        st.lists(_PIECES, max_size=12).map(lambda pieces: b"From: a@b.example\r\n" + b"".join(pieces)),
    )
)
def test_arbitrary_bytes_never_raise_they_give_a_seal_or_nothing(data: bytes) -> None:
    for chain in ("none", "pass", "fail"):
        added = seal(data, chain=chain)
        assert added == b"" or added.startswith(b"ARC-Seal: i=")
        if added:
            assert [name for name, _ in fields(added)] == [
                "ARC-Seal",
                "ARC-Message-Signature",
                "ARC-Authentication-Results",
            ]
