"""DKIM signing of outbound mail (docs/decisions/0056): our signatures, Ed25519 and RSA, verified by dkimpy
through our resolver against a DNS server on loopback that publishes the records `postoffice dkim records`
prints; what the signature covers; the signing stage for submitted and relayed mail and never for mail from
port 25 or the queue; DSNs signed by the parent domain of the host name; a rotation that leaves mail signed
before it verifiable while the old key is retiring; and a broken key that leaves mail unsigned, not lost."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from postoffice.delivery.pipeline import DeliveryPipeline
from postoffice.delivery.plan import Envelope, Origin, Recipient
from postoffice.directory import operations
from postoffice.mailauth.dkim_keys import (
    ALGORITHMS,
    load_private_key,
    new_pair,
    published,
    record_name,
    record_value,
    selectors,
    signing_keys,
    txt_strings,
    zone_line,
)
from postoffice.mailauth.dkim_sign import (
    SIGNED_FIELDS,
    DkimSigner,
    SigningKey,
    SigningStage,
    from_domain,
    sign_message,
    signing_domain,
)
from postoffice.mailauth.dkim_verify import verify_signatures
from postoffice.net.dns import DnsResolver
from postoffice.store import DkimKey, MailStore, open_store
from tests.delivery.harness import DEMO, HOSTNAME, OTHER, Harness, as_message
from tests.support.dns_server import DnsServer, Zones
from tests.support.mail import run_bounded

ZONES = Zones()
NOW = 1_800_000_000.0
#: when the tests' messages are signed: now (a signature from the future is refused, RFC 6376 section 3.5 t=)
SIGNED_AT = time.time()
MESSAGE = (
    b"From: Demo <demo@example.test>\r\nTo: bob@remote.test, Carol <carol@remote.test>\r\n"
    b"Cc: dan@remote.test\r\n"
    b"Subject: Dinner\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <dinner@example.test>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nX-Mailer: test\r\n\r\n"
    b"Is dinner ready?\r\n\r\n-- \r\nDemo\r\n"
)


def publish(keys: list[DkimKey], zones: Zones = ZONES) -> None:
    """Put the keys' records in DNS as `postoffice dkim records` prints them."""
    for key in published(keys):
        zones.clear(record_name(key))
        zones.add(record_name(key), "TXT", " ".join(f'"{s}"' for s in txt_strings(record_value(key))))


def ready(keys: list[DkimKey]) -> list[SigningKey]:
    return [SigningKey(k.domain, k.selector, k.algorithm, load_private_key(k)) for k in signing_keys(keys)]


#: one pair for the tests that need keys but no store (made once: RSA takes a moment)
PAIR = new_pair("example.test", [], state="active", now=NOW)


@pytest.fixture(scope="module")
def resolver() -> Iterator[DnsResolver]:
    publish(PAIR)
    with DnsServer(ZONES) as server:
        yield DnsResolver(["127.0.0.1"], port=server.port, timeout=1, lifetime=2)


def results(message: bytes, resolver: DnsResolver) -> list[tuple[str, str, str, str]]:
    return [(r.result, r.domain, r.selector, r.algorithm) for r in verify_signatures(message, resolver)]


def fields(message: bytes) -> list[dict[str, str]]:
    """The tags of each DKIM-Signature field, top first (white space removed)."""
    found = []
    for name, value in dkim.rfc822_parse(message)[0]:
        if name.lower() == b"dkim-signature":
            text = re.sub(r"\s+", "", value.decode())
            found.append(dict(part.split("=", 1) for part in text.split(";") if part))
    return found


# -- the keys ------------------------------------------------------------------------------------------------


def test_a_pair_is_an_rsa_2048_and_an_ed25519_key_with_dated_selectors() -> None:
    rsa_key, ed_key = PAIR
    assert (rsa_key.algorithm, ed_key.algorithm) == ALGORITHMS == ("rsa", "ed25519")
    month = time.strftime("%Y%m", time.gmtime(NOW))
    assert (rsa_key.selector, ed_key.selector) == (f"po{month}r", f"po{month}e")
    assert load_private_key(rsa_key).key_size == 2048  # type: ignore[union-attr]
    assert len(ed_key.public_key) == 44  # 32 octets in base64 (RFC 8463 section 4.2)
    assert rsa_key.private_key.startswith("-----BEGIN PRIVATE KEY-----")
    assert "PRIVATE" not in repr(rsa_key)
    # a second pair in the same month gets numbered selectors, a third the next number
    taken = [rsa_key.selector, ed_key.selector]
    assert selectors(taken, NOW) == {"rsa": f"po{month}r2", "ed25519": f"po{month}e2"}
    assert selectors([*taken, f"po{month}e2"], NOW) == {"rsa": f"po{month}r3", "ed25519": f"po{month}e3"}


def test_the_records_in_zone_file_form_with_the_rsa_key_split_into_strings() -> None:
    rsa_key, ed_key = PAIR
    assert zone_line(ed_key) == (
        f'{ed_key.selector}._domainkey.example.test. IN TXT "v=DKIM1; k=ed25519; p={ed_key.public_key}"'
    )
    line = zone_line(rsa_key)
    assert line.startswith(f'{rsa_key.selector}._domainkey.example.test. IN TXT "v=DKIM1; k=rsa; p=MII')
    strings = re.findall(r'"([^"]*)"', line)
    assert len(strings) == 2
    assert all(len(s) <= 255 for s in strings)
    assert "".join(strings) == record_value(rsa_key)


# -- the signatures ------------------------------------------------------------------------------------------


def test_both_signatures_verify_with_dkimpy_through_dns_rsa_on_top(resolver: DnsResolver) -> None:
    rsa_key, ed_key = PAIR
    signed = sign_message(MESSAGE, ready(PAIR), SIGNED_AT) + MESSAGE
    assert results(signed, resolver) == [
        ("pass", "example.test", rsa_key.selector, "rsa-sha256"),
        ("pass", "example.test", ed_key.selector, "ed25519-sha256"),
    ]
    # and by dkimpy's own verification entry point, outside our verifier
    assert dkim.DKIM(signed).verify(idx=1, dnsfunc=lambda name, timeout=5: _txt(resolver, name))


def _txt(resolver: DnsResolver, name: bytes) -> bytes | None:
    answer = resolver.query_sync(name.decode(), "TXT")
    return None if answer is None else b"".join(next(iter(answer)).strings)


def test_what_the_signature_covers_and_how_it_is_written() -> None:
    signed = sign_message(MESSAGE, ready(PAIR), SIGNED_AT) + MESSAGE
    for tags in fields(signed):
        assert tags["v"] == "1"
        assert tags["c"] == "relaxed/relaxed"
        assert tags["d"] == "example.test"
        assert tags["t"] == str(int(SIGNED_AT))
        assert "l" not in tags  # no body length: nothing can be appended
        assert "x" not in tags  # no expiry (docs/decisions/0056)
        # the fields present, in the list's order, and From once more than present (oversigned)
        assert tags["h"].split(":") == [
            "from",
            "to",
            "cc",
            "subject",
            "date",
            "message-id",
            "mime-version",
            "content-type",
            "from",
        ]
    assert set(SIGNED_FIELDS) >= {
        "reply-to",
        "sender",
        "in-reply-to",
        "references",
        "content-transfer-encoding",
    }
    head = signed.split(b"\r\n\r\n")[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert re.search(rb"\r\n b=[A-Za-z0-9+/]", head)  # b= begins a line of its own


def test_relaxed_canonicalisation_survives_refolding_but_not_a_change(resolver: DnsResolver) -> None:
    signed = sign_message(MESSAGE, ready(PAIR), SIGNED_AT) + MESSAGE

    def outcome(message: bytes) -> list[str]:
        return [r[0] for r in results(message, resolver)]

    assert outcome(signed.replace(b"Subject: Dinner", b"Subject:   Dinner \r\n\t")) == ["pass", "pass"]
    assert outcome(signed.replace(b"Demo\r\n", b"Demo  \r\n\r\n\r\n")) == ["pass", "pass"]
    assert outcome(b"X-Added: by a relay\r\n" + signed) == ["pass", "pass"]  # an unsigned field
    assert outcome(signed.replace(b"Subject: Dinner", b"Subject: Lunch")) == ["fail", "fail"]
    assert outcome(signed.replace(b"dinner ready", b"lunch ready")) == ["fail", "fail"]
    # a second From, above or below: the oversigned From makes the signature fail
    second = signed.replace(b"X-Mailer", b"From: ceo@example.test\r\nX-Mailer")
    assert outcome(second) == ["fail", "fail"]


def test_the_author_domain_and_the_domain_that_signs() -> None:
    assert from_domain(MESSAGE) == "example.test"
    assert (
        from_domain(b"From: =?utf-8?q?D=C3=A9mo?= <d@Mail.Example.TEST>\r\n\r\nx\r\n") == "mail.example.test"
    )
    assert from_domain(b"From: a@example.test, b@other.test\r\n\r\nx\r\n") is None  # two authors, two domains
    assert from_domain(b"From: a@example.test\r\nFrom: b@example.test\r\n\r\nx\r\n") is None
    assert from_domain(b"To: a@example.test\r\n\r\nx\r\n") is None
    active = {"example.test": tuple(ready(PAIR))}
    assert signing_domain("example.test", active) == "example.test"
    assert signing_domain("mail.example.test", active) == "example.test"  # DSNs from the host name
    assert signing_domain("badexample.test", active) is None
    assert signing_domain("test", active) is None
    assert signing_domain("other.test", active) is None
    with pytest.raises(ValueError, match="without a From"):
        sign_message(b"To: a@b.c\r\n\r\nx\r\n", ready(PAIR), NOW)


# -- the stage -----------------------------------------------------------------------------------------------


@pytest.fixture
def harness(tmp_path: Path, resolver: DnsResolver) -> Iterator[Harness]:
    """The delivery harness (real store, pipeline, queue runner) with the signing stage and a pair of keys for
    example.test, published in the loopback DNS."""
    h = Harness(tmp_path / "h")
    keys, made = h.call(operations.dkim_generate(h.store, "example.test", by="test"))
    assert made
    publish(keys)
    signer = DkimSigner(h.store, ttl=0)  # every signature reads the keys again (rotation tests)
    h.pipeline = DeliveryPipeline(h.store, [SigningStage(signer)], hostname=HOSTNAME)
    try:
        yield h
    finally:
        signer.close()
        h.stop()


def deliver(h: Harness, raw: bytes, kind: str, recipients: list[Recipient]) -> int | None:
    origin = Origin(kind, "127.0.0.1", account=None, id="T1")  # type: ignore[arg-type]
    outcome = h.call(h.pipeline.deliver(as_message(raw), Envelope(DEMO), recipients, origin))
    assert outcome.refusal is None
    return outcome.queue_id


def test_submitted_mail_is_signed_for_local_and_remote_recipients_alike(
    harness: Harness, resolver: DnsResolver
) -> None:
    h = harness
    queue_id = deliver(
        h, MESSAGE, "submission", [Recipient(OTHER, (h.ids[OTHER],)), Recipient("bob@remote.test")]
    )
    assert queue_id is not None
    (copy,) = h.messages(OTHER)
    local = h.content(copy)
    queued = h.call(h.store.queue_read(queue_id))
    assert local == queued  # the queue keeps the signed text, and the local copy is the same
    assert local.endswith(MESSAGE)
    selectors_used = [tags["s"] for tags in fields(local)]
    assert [r[0] for r in results(queued, resolver)] == ["pass", "pass"]
    assert [k.selector for k in signing_keys(h.call(h.store.dkim_keys("example.test")))] == selectors_used


@pytest.mark.parametrize(("kind", "signed"), [("relay", True), ("mx", False), ("queue", False)])
def test_relayed_mail_is_signed_but_mail_from_other_servers_and_the_queue_is_not(
    harness: Harness, kind: str, signed: bool
) -> None:
    h = harness
    queue_id = deliver(h, MESSAGE, kind, [Recipient(OTHER, (h.ids[OTHER],)), Recipient("bob@remote.test")])
    assert queue_id is not None
    (copy,) = h.messages(OTHER)
    assert h.content(copy).startswith(b"DKIM-Signature:") is signed
    assert h.call(h.store.queue_read(queue_id)).startswith(b"DKIM-Signature:") is signed


def test_mail_that_stays_here_is_not_signed(harness: Harness) -> None:
    h = harness
    deliver(h, MESSAGE, "submission", [Recipient(OTHER, (h.ids[OTHER],))])
    (copy,) = h.messages(OTHER)
    assert h.content(copy) == MESSAGE


def test_mail_from_a_domain_that_is_not_ours_is_not_signed(harness: Harness) -> None:
    h = harness
    raw = MESSAGE.replace(b"demo@example.test", b"someone@elsewhere.test")
    queue_id = deliver(
        h, raw, "submission", [Recipient(OTHER, (h.ids[OTHER],)), Recipient("bob@remote.test")]
    )
    assert queue_id is not None
    (copy,) = h.messages(OTHER)
    assert h.content(copy) == raw
    assert h.call(h.store.queue_read(queue_id)) == raw


def test_a_large_message_is_signed_off_the_event_loop_and_verifies(
    harness: Harness, resolver: DnsResolver
) -> None:
    h = harness
    raw = MESSAGE + b"".join(b"line %d of a long letter\r\n" % n for n in range(40_000))  # ~1 MB
    queue_id = deliver(h, raw, "submission", [Recipient("bob@remote.test")])
    assert queue_id is not None
    queued = h.call(h.store.queue_read(queue_id))
    assert queued.endswith(raw)
    assert [r[0] for r in results(queued, resolver)] == ["pass", "pass"]


def test_a_bounce_is_signed_by_the_domain_of_the_host_name(harness: Harness, resolver: DnsResolver) -> None:
    """A DSN comes from MAILER-DAEMON@mx.example.test (the host name): signed by example.test, which aligns
    with it for DMARC's relaxed mode."""
    h = harness
    queue_id = deliver(
        h, MESSAGE, "submission", [Recipient("nobody@example.test")]
    )  # queued for a local name
    assert queue_id is not None
    h.run_queue()  # no such user here: it fails, and the DSN to demo@example.test is queued
    h.run_queue()  # the DSN is delivered to demo's mailbox
    (bounce,) = h.messages(DEMO)
    raw = h.content(bounce)
    assert b"MAILER-DAEMON@" + HOSTNAME.encode() in raw
    assert [(r[0], r[1]) for r in results(raw, resolver)] == [
        ("pass", "example.test"),
        ("pass", "example.test"),
    ]


def test_a_report_of_refused_recipients_is_signed(harness: Harness, resolver: DnsResolver) -> None:
    h = harness

    class Reject:
        name = "reject-other"

        async def run(self, message: object, plan: object) -> None:
            for recipient in plan.recipients:  # type: ignore[attr-defined]
                if recipient.account_id == h.ids[OTHER]:
                    recipient.reject()

    h.pipeline = DeliveryPipeline(h.store, [Reject(), *h.pipeline.stages], hostname=HOSTNAME)
    origin = Origin("mx", "127.0.0.1", id="T2")
    raw = MESSAGE.replace(b"demo@example.test", b"someone@remote.test")
    outcome = h.call(
        h.pipeline.deliver(
            as_message(raw),
            Envelope("someone@remote.test"),
            [Recipient(OTHER, (h.ids[OTHER],)), Recipient(DEMO, (h.ids[DEMO],))],
            origin,
        )
    )
    assert outcome.reported == 1
    (dsn,) = h.call(h.store.queue_list())
    report = h.call(h.store.queue_read(dsn.id))
    assert b"MAILER-DAEMON@" in report
    assert [r[0] for r in results(report, resolver)] == ["pass", "pass"]
    assert not h.content(h.messages(DEMO)[0]).startswith(b"DKIM-Signature")  # from port 25: not ours to sign


# -- rotation ------------------------------------------------------------------------------------------------


def test_a_rotation_keeps_mail_signed_with_the_old_key_verifiable_while_it_retires(
    harness: Harness, resolver: DnsResolver
) -> None:
    h = harness
    store = h.store

    def signed_by() -> tuple[bytes, list[str]]:
        queue_id = deliver(h, MESSAGE, "submission", [Recipient("bob@remote.test")])
        assert queue_id is not None
        raw = h.call(store.queue_read(queue_id))
        return raw, [tags["s"] for tags in fields(raw)]

    before, old = signed_by()
    new, _retired = h.call(operations.dkim_rotate(store, "example.test", by="test"))
    publish(new)
    assert signed_by()[1] == old  # pending: published, not signing yet
    activated, retired = h.call(operations.dkim_activate(store, "example.test", by="test"))
    assert sorted(k.selector for k in retired) == sorted(old)
    after, selectors_now = signed_by()
    assert selectors_now == [k.selector for k in activated] != old
    # the message signed before the switch (still in a queue somewhere) verifies: the old keys are published
    assert [r[0] for r in results(before, resolver)] == ["pass", "pass"]
    assert [r[0] for r in results(after, resolver)] == ["pass", "pass"]
    all_keys = h.call(store.dkim_keys("example.test"))
    assert {k.selector for k in published(all_keys)} == {*old, *selectors_now}
    # too early to remove them; once the retiring period is over they go, and their records with them
    removed, waiting = h.call(operations.dkim_retire(store, "example.test", by="test", keep_for=7 * 86400))
    assert removed == []
    assert sorted(k.selector for k in waiting) == sorted(old)
    later = time.time() + 7 * 86400 + 1
    removed, waiting = h.call(
        operations.dkim_retire(store, "example.test", by="test", keep_for=7 * 86400, now=later)
    )
    assert sorted(k.selector for k in removed) == sorted(old)
    assert all(k.private_key == "" for k in removed)
    assert {k.selector for k in published(h.call(store.dkim_keys("example.test")))} == set(selectors_now)
    for key in removed:
        ZONES.clear(record_name(key))
    assert [r[0] for r in results(before, resolver)] == ["permerror", "permerror"]  # no key any more


def test_rotate_at_once_signs_with_the_new_pair_immediately(harness: Harness) -> None:
    h = harness
    old = {k.selector for k in signing_keys(h.call(h.store.dkim_keys("example.test")))}
    made, retired = h.call(operations.dkim_rotate(h.store, "example.test", by="test", at_once=True))
    assert {k.state for k in made} == {"active"}
    assert {k.selector for k in retired} == old
    with pytest.raises(operations.DkimKeyError, match="no new DKIM keys"):
        h.call(operations.dkim_activate(h.store, "example.test", by="test"))
    keys, made_now = h.call(operations.dkim_generate(h.store, "example.test", by="test"))
    assert not made_now  # it has keys: generate leaves them
    assert {k.state for k in keys} == {"active", "retiring"}


# -- failures ------------------------------------------------------------------------------------------------


def test_a_key_that_cannot_be_loaded_leaves_the_message_unsigned_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> bytes | None:
        store: MailStore = open_store(tmp_path / "mail.sqlite3")
        signer = DkimSigner(store)
        try:
            await store.add_domain("example.test")
            broken = DkimKey(0, "example.test", "bad", "rsa", "AAAA", "not a key", "active", NOW, NOW)
            await store.add_dkim_keys([broken])
            signed = await signer.sign(MESSAGE)
            return None if signed is None else signed.fields
        finally:
            signer.close()
            await store.close()

    with caplog.at_level(logging.ERROR, logger="postoffice.mailauth"):
        assert run_bounded(scenario()) is None
    assert "the key bad of example.test cannot be used" in caplog.text
    assert "not a key" not in caplog.text  # the private key's text is never logged


def test_a_stage_whose_signer_fails_delivers_the_message_unsigned(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness

    class Broken(DkimSigner):
        async def sign(self, message: bytes) -> None:
            raise RuntimeError("the signer broke")

    broken = Broken(h.store)
    h.pipeline = DeliveryPipeline(h.store, [SigningStage(broken)], hostname=HOSTNAME)
    try:
        with caplog.at_level(logging.ERROR, logger="postoffice.mailauth"):
            deliver(
                h, MESSAGE, "submission", [Recipient(OTHER, (h.ids[OTHER],)), Recipient("bob@remote.test")]
            )
        (copy,) = h.messages(OTHER)
        assert h.content(copy) == MESSAGE
        assert "dkim: signing id=T1 failed; it goes unsigned: the signer broke" in caplog.text
        assert h.call(h.pipeline.sign_generated(b"From: x@example.test\r\n\r\nx\r\n")) == (
            b"From: x@example.test\r\n\r\nx\r\n"
        )
    finally:
        broken.close()


def test_without_the_stage_generated_mail_is_left_as_it_is(tmp_path: Path) -> None:
    async def scenario() -> bytes:
        store = open_store(tmp_path / "mail.sqlite3")
        try:
            return await DeliveryPipeline(store, hostname=HOSTNAME).sign_generated(MESSAGE)
        finally:
            await store.close()

    assert asyncio.run(scenario()) == MESSAGE
