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
from postoffice.store import OutboundMessage, OutboundRecipient
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


def test_another_forwarders_srs_address_becomes_srs1_pointing_at_that_forwarder() -> None:
    """libsrs2's SRS1: forwarding another forwarder's SRS0 address names that forwarder and keeps its SRS0
    part; a third forwarder keeps the same parts (the address does not grow); a bounce to each goes
    straight to the first forwarder's SRS0 address."""
    theirs = srs.forward("alice@example.org", "first.example", b"their secret", now=NOW)
    ours = srs.forward(theirs, "fwd.test", SECRET, now=NOW)
    srs0_rest = theirs.rpartition("@")[0][len("SRS0") :]
    assert ours.startswith("SRS1=")
    assert ours.endswith(f"=first.example={srs0_rest}@fwd.test")
    assert "=first.example==" in ours
    local = ours.rpartition("@")[0]
    assert srs.is_srs(local)
    assert srs.reverse(local, SECRET, now=NOW + 400 * DAY) == theirs  # SRS1 has no time stamp of ours
    again = srs.forward(f"{local}@fwd.test", "third.example", b"third secret")
    assert again.rpartition("@")[0].split("=", 2)[2] == local.split("=", 2)[2]  # same parts, new hash
    assert srs.reverse(again.rpartition("@")[0], b"third secret") == theirs
    with pytest.raises(srs.SrsError, match="hash"):
        srs.reverse(local.replace("first.example", "victim.example"), SECRET)
    with pytest.raises(srs.SrsError, match="hash"):
        srs.reverse(local, b"another secret")


@given(
    st.text(alphabet=string.ascii_letters + string.digits + ".+_", min_size=1, max_size=30),
    st.sampled_from(["example.org", "Mixed.Example", "xn--bcher-kva.example"]),
)
def test_srs0_then_srs1_lead_back_to_the_sender_whatever_the_local_part(local: str, domain: str) -> None:
    first = srs.forward(f"{local}@{domain}", "first.example", b"first", now=NOW)
    second = srs.forward(first, "fwd.test", SECRET, now=NOW)
    back = srs.reverse(second.rpartition("@")[0], SECRET, now=NOW)
    assert back == first
    assert srs.reverse(back.rpartition("@")[0], b"first", now=NOW) == f"{local}@{domain.lower()}"


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


def test_a_bounce_to_our_srs1_address_goes_to_the_first_forwarder_or_straight_to_the_sender(
    make: MakeHarness,
) -> None:
    """A bounce to an SRS1 address of ours is forwarded to the first forwarder's SRS0 address; when that
    first forwarder was us, straight on to the original sender."""
    h = make()
    secret = h.call(h.store.server_secret("srs"))
    theirs = srs.forward("alice@sender.example", "first.example", b"their secret")
    via_them = srs.forward(theirs, "example.test", secret)
    ours = srs.forward("bob@sender.example", "example.test", secret)
    round_trip = srs.forward(srs.forward(ours, "middle.example", b"middle"), "example.test", secret)
    with smtplib.SMTP("127.0.0.1", h.smtp("mx")) as smtp:
        smtp.sendmail("", [via_them], message("bounce 1"))
        smtp.sendmail("", [round_trip], message("bounce 2"))
    queued = h.call(h.store.queue_list())
    assert sorted(r.address for q in queued for r in q.recipients) == sorted(["bob@sender.example", theirs])
    assert {q.sender for q in queued} == {""}


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
    """RFC 5321 section 6.3: a loop (an alias forwarding to an address that forwards back) ends. The local
    copy is kept, and the sender is told that the alias's forward failed (554 5.4.6), naming the address
    they used, not where it leads."""
    h = make()
    h.call(h.store.add_alias("loop@example.test", [OTHER, "back@outside.example"]))
    looped = b"".join(
        b"Received: from hop%d.example by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % i for i in range(49)
    )
    with smtplib.SMTP("127.0.0.1", h.smtp("mx")) as smtp:  # our own Received field makes 50
        smtp.sendmail("alice@sender.example", ["loop@example.test"], looped + message("round"))
    assert len(h.messages(OTHER)) == 1  # the local copy is kept
    (dsn,) = h.call(h.store.queue_list())  # and no forward
    assert dsn.sender == ""
    assert [r.address for r in dsn.recipients] == ["alice@sender.example"]
    report = h.call(h.store.queue_read(dsn.id))
    assert b"Final-Recipient: rfc822; loop@example.test" in report
    assert b"Status: 5.4.6" in report
    assert b"outside.example" not in report.split(b"Subject: round")[0]  # the alias's target stays private


def test_a_looping_forward_with_nothing_else_to_deliver_is_refused_at_data(make: MakeHarness) -> None:
    h = make()
    h.call(h.store.add_alias("away@example.test", ["far@outside.example"]))
    looped = b"".join(b"Received: from hop%d.example by x\r\n" % i for i in range(60))
    with smtplib.SMTP("127.0.0.1", h.smtp("mx")) as smtp, pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.sendmail("alice@sender.example", ["away@example.test"], looped + message("round"))
    assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (554, b"5.4.6")
    assert h.call(h.store.queue_list()) == []  # nothing stored, nothing bounced: the client reports it


def test_the_queue_reports_a_looping_forward_of_a_local_recipient(make: MakeHarness) -> None:
    """The queue's local deliveries (relayed mail for our users) end a loop the same way: the local copy
    is kept and the recipient whose forward would loop fails with 554 5.4.6, reported to the sender."""
    h = make()
    h.call(h.store.add_alias("loop@example.test", [OTHER, "back@outside.example"]))
    looped = b"".join(b"Received: from hop%d.example by x\r\n" % i for i in range(50))
    raw = looped + message("queued round")
    queue_id = h.call(
        h.store.enqueue(
            raw, len(raw), OutboundMessage("alice@sender.example", [OutboundRecipient("loop@example.test")])
        )
    )
    h.run_queue()
    assert len(h.messages(OTHER)) == 1
    assert h.call(h.store.queue_get(queue_id)) is None  # done with
    (dsn,) = h.call(h.store.queue_list())  # a bounce, and no forward
    assert dsn.sender == ""
    assert [r.address for r in dsn.recipients] == ["alice@sender.example"]
    assert b"Status: 5.4.6" in h.call(h.store.queue_read(dsn.id))


def test_the_loop_limit_counts_received_fields_of_the_header_only() -> None:
    assert received_fields(b"Received: a\r\nX: y\r\nreceived: b\r\n\r\nReceived: body\r\n") == 2
