"""Forwarding through aliases to outside addresses (docs/decisions/0059): the forwarded copy is queued in the
same transaction as the local copies, with an SRS envelope sender; a bounce to that SRS address goes back
to the original sender, and an SRS address takes nothing else; SRS itself (its hash, its age)."""

from __future__ import annotations

import smtplib
import string
from email.parser import BytesHeaderParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.delivery import srs
from postoffice.delivery.forwarding import received_fields, without_return_path
from postoffice.directory.operations import dkim_generate
from tests.delivery.harness import DEMO, OTHER, MakeHarness, message

SECRET = b"k" * 32
DAY = 86400.0
NOW = 1_800_000_000.0


# -- SRS -----------------------------------------------------------------------------------------------------


def test_an_srs_address_leads_back_to_the_sender_for_21_days() -> None:
    address = srs.forward("Alice@Example.ORG", "fwd.test", SECRET, now=NOW)
    local, _, domain = address.rpartition("@")
    assert domain == "fwd.test"
    assert local.startswith("SRS0=")
    assert local.endswith("=example.org=Alice")
    assert srs.is_srs(local)
    assert srs.reverse(local, SECRET, now=NOW) == "Alice@example.org"
    assert (
        srs.reverse(local.lower(), SECRET, now=NOW + 21 * DAY) == "alice@example.org"
    )  # case lost on the way
    with pytest.raises(srs.SrsError, match="days old"):
        srs.reverse(local, SECRET, now=NOW + 22 * DAY)
    with pytest.raises(srs.SrsError, match="hash"):
        srs.reverse(local, b"another secret", now=NOW)
    forged = local.replace("=example.org=", "=victim.example=")
    with pytest.raises(srs.SrsError, match="hash"):
        srs.reverse(forged, SECRET, now=NOW)
    assert not srs.is_srs("alice")
    with pytest.raises(srs.SrsError):
        srs.forward("no-at-sign", "fwd.test", SECRET)


@given(st.text(alphabet=string.printable, max_size=80))
def test_any_local_part_reverses_to_an_address_or_an_srs_error(local: str) -> None:
    try:
        srs.reverse(local, SECRET, now=NOW)
    except srs.SrsError:
        pass


def test_the_return_path_of_final_delivery_is_not_forwarded() -> None:
    data = b"Return-Path: <a@b>\r\nReturn-Path:\r\n <c@d>\r\nReceived: x\r\n\r\nbody\r\n"
    assert without_return_path(data) == b"Received: x\r\n\r\nbody\r\n"
    assert without_return_path(b"Subject: s\r\n\r\n") == b"Subject: s\r\n\r\n"


# -- through the pipeline ------------------------------------------------------------------------------------


def test_an_alias_to_an_outside_address_queues_a_forward_with_an_srs_sender(make: MakeHarness) -> None:
    h = make()
    h.call(h.store.add_alias("team@example.test", [OTHER, "friend@outside.example"]))
    h.call(h.store.add_alias("away@example.test", ["far@outside.example"]))
    port = h.smtp("mx")
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.sendmail("alice@sender.example", ["team@example.test", "away@example.test"], message("fwd"))
    (kept,) = h.messages(OTHER)  # the local target
    assert b"Subject: fwd" in h.content(kept)
    (queued,) = h.call(h.store.queue_list())
    assert sorted(r.address for r in queued.recipients) == ["far@outside.example", "friend@outside.example"]
    local = queued.sender.rpartition("@")[0]
    assert queued.sender.endswith("@example.test")
    assert srs.reverse(local, h.call(h.store.server_secret("srs"))) == "alice@sender.example"
    data = h.call(h.store.queue_read(queued.id))
    assert data.startswith(b"Received: ")  # our trace field on top, no Return-Path
    assert b"Return-Path" not in data
    assert b"Subject: fwd" in data


def test_a_sender_of_our_own_is_forwarded_as_it_is(make: MakeHarness) -> None:
    h = make()
    h.call(h.store.add_alias("away@example.test", ["far@outside.example"]))
    with smtplib.SMTP("127.0.0.1", h.smtp("mx")) as smtp:
        smtp.sendmail(DEMO, ["away@example.test"], message("own"))
    (queued,) = h.call(h.store.queue_list())
    assert queued.sender == DEMO  # our SPF covers it already


def test_a_bounce_to_an_srs_address_goes_back_to_the_original_sender_and_nothing_else_does(
    make: MakeHarness,
) -> None:
    h = make()
    secret = h.call(h.store.server_secret("srs"))
    address = srs.forward("alice@sender.example", "example.test", secret)
    port = h.smtp("mx")
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.sendmail("", [address], message("bounce"))
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail("spammer@evil.example", [address], message("abuse"))
        assert refused.value.recipients[address][0] == 550
        tampered = address.replace("alice", "mallory")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("", [tampered], message("forged"))
    (queued,) = h.call(h.store.queue_list())
    assert queued.sender == ""  # a bounce stays a bounce
    assert [r.address for r in queued.recipients] == ["alice@sender.example"]
    assert h.messages(DEMO) == []


def test_a_forward_through_a_domain_with_keys_is_arc_sealed_with_its_rsa_key(make: MakeHarness) -> None:
    h = make()
    h.call(dkim_generate(h.store, "example.test", by="test"))
    h.call(h.store.add_alias("away@example.test", ["far@outside.example"]))
    with smtplib.SMTP("127.0.0.1", h.smtp("mx")) as smtp:
        smtp.sendmail("alice@sender.example", ["away@example.test"], message("sealed"))
    (queued,) = h.call(h.store.queue_list())
    data = h.call(h.store.queue_read(queued.id))
    names = BytesHeaderParser().parsebytes(data).keys()
    assert names[:4] == ["ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results", "Received"]
    unfolded = data.replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    assert b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=example.test;" in unfolded
    rsa = [
        k for k in h.call(h.store.dkim_keys("example.test")) if k.algorithm == "rsa" and k.state == "active"
    ]
    assert f"s={rsa[0].selector}".encode() in unfolded


def test_a_message_that_went_round_50_hosts_is_not_forwarded_again(make: MakeHarness) -> None:
    """RFC 5321 section 6.3: a loop (an alias forwarding to an address that forwards back) ends."""
    h = make()
    h.call(h.store.add_alias("loop@example.test", [OTHER, "back@outside.example"]))
    looped = b"".join(
        b"Received: from hop%d.example by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % i for i in range(49)
    )
    with smtplib.SMTP("127.0.0.1", h.smtp("mx")) as smtp:  # our own Received field makes 50
        smtp.sendmail("alice@sender.example", ["loop@example.test"], looped + message("round"))
    assert h.call(h.store.queue_list()) == []
    assert len(h.messages(OTHER)) == 1  # the local copy is kept
    assert received_fields(b"Received: a\r\nX: y\r\nreceived: b\r\n\r\nReceived: body\r\n") == 2
