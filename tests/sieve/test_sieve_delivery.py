"""Sieve at delivery (RFC 5228 section 2.10, docs/decisions/0082): each recipient's active script decides
where its copy goes, through real SMTP sessions on port 25 into the real store. Every outcome commits with
the delivery: several copies, discards, rejects in the SMTP dialogue or a DSN, redirects as forwards with an
SRS sender, vacation replies once per sender (RFC 5230, RFC 3834); a failing script keeps the message and
tells the account once per version."""

from __future__ import annotations

import email
import email.policy
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.delivery import srs
from postoffice.delivery.pipeline import DeliveryPipeline
from postoffice.delivery.plan import DeliveryPlan, Message
from postoffice.sieve.stage import SieveStage
from postoffice.store import MetadataLimits, QueuedMessage, SieveLimits
from tests.delivery.harness import DEMO, HOSTNAME, OTHER, FunctionStage, Harness, message

LIMITS = SieveLimits(max_scripts=8, max_script_octets=65536, max_account_octets=262144)
SENDER = "alice@sender.example"


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    harness.pipeline = DeliveryPipeline(
        harness.store, [SieveStage(harness.store, HOSTNAME)], hostname=HOSTNAME
    )
    yield harness
    harness.stop()


def activate(h: Harness, address: str, script: str, name: str = "main") -> None:
    account = h.ids[address]
    h.call(h.store.put_sieve_script(account, name, script, LIMITS))
    h.call(h.store.activate_sieve_script(account, name))


def send(h: Harness, raw: bytes, *, to: tuple[str, ...] = (DEMO,), sender: str = SENDER) -> None:
    with smtplib.SMTP("127.0.0.1", h.smtp("mx")) as smtp:
        smtp.sendmail(sender, list(to), raw)


def queued(h: Harness) -> list[tuple[QueuedMessage, email.message.EmailMessage]]:
    found = []
    for entry in h.call(h.store.queue_list()):
        data = h.call(h.store.queue_read(entry.id))
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        found.append((entry, parsed))
    return found


def subjects(h: Harness, address: str, mailbox: str = "INBOX") -> list[str]:
    found = []
    for info in h.messages(address, mailbox):
        parsed = email.message_from_bytes(h.content(info), policy=email.policy.default)
        found.append(str(parsed["Subject"]))
    return found


def test_fileinto_and_keep_store_one_copy_in_each_mailbox(h: Harness) -> None:
    h.call(h.store.create_mailbox(h.ids[DEMO], "Lists/dev"))
    activate(
        h,
        DEMO,
        'require "fileinto";\r\n'
        'if header :contains "subject" "[dev]" { fileinto "Lists/dev"; keep; }\r\n'
        'elsif address :domain :is "from" "spam.example" { fileinto "Lists/dev"; }\r\n',
    )
    send(h, message("[dev] release"))
    send(h, message("plain"))
    send(h, message("from spam", sender="x@spam.example"))
    assert subjects(h, DEMO, "Lists/dev") == ["[dev] release", "from spam"]
    assert subjects(h, DEMO) == ["[dev] release", "plain"]
    assert subjects(h, OTHER) == []


def test_fileinto_addflag_and_keep_commit_together_each_copy_with_its_flags(h: Harness) -> None:
    h.call(h.store.create_mailbox(h.ids[DEMO], "Work"))
    activate(
        h,
        DEMO,
        'require ["fileinto", "imap4flags"];\r\n'
        'addflag "$Work";\r\n'
        'fileinto :flags "\\\\Flagged $Urgent" "Work";\r\n'
        'fileinto "work";\r\n'  # mailbox names are case-sensitive: "work" does not exist, so INBOX
        'addflag ["\\\\Seen", "\\\\Recent", "bad(flag"];\r\n'  # \Recent and what is no atom: left out
        "keep;\r\n",
    )
    send(h, message("flagged"))
    (work,) = h.messages(DEMO, "Work")
    assert work.flags == frozenset({"\\Flagged", "$Urgent"})
    inbox = h.messages(DEMO)
    assert [m.flags for m in inbox] == [frozenset({"$Work", "\\Seen"})]  # "work" and the keep: INBOX, once
    assert work.content_id == inbox[0].content_id  # one stored text for both copies


def test_fileinto_a_mailbox_that_does_not_exist_keeps_the_message_in_the_inbox(h: Harness) -> None:
    activate(h, DEMO, 'require "fileinto"; fileinto "Nowhere";')
    send(h, message("lost?"))
    assert subjects(h, DEMO) == ["lost?"]


def test_discard_stores_nothing_and_the_sender_hears_nothing(h: Harness) -> None:
    activate(h, DEMO, 'if header :is "subject" "noise" { discard; stop; }')
    send(h, message("noise"), to=(DEMO, OTHER))
    send(h, message("signal"))
    assert subjects(h, DEMO) == ["signal"]
    assert subjects(h, OTHER) == ["noise"]  # another account's copy is its own
    assert h.call(h.store.queue_list()) == []


def test_the_envelope_test_reads_the_smtp_envelope(h: Harness) -> None:
    h.call(h.store.create_mailbox(h.ids[DEMO], "Bob"))
    activate(
        h,
        DEMO,
        'require ["envelope", "fileinto"];\r\n'
        'if envelope :localpart :is "from" "bob" { fileinto "Bob"; }\r\n'
        'if envelope :is "to" "nobody@example.test" { discard; }\r\n',
    )
    send(h, message("from bob", sender="alice@sender.example"), sender="bob@sender.example")
    send(h, message("from alice"))
    assert subjects(h, DEMO, "Bob") == ["from bob"]
    assert subjects(h, DEMO) == ["from alice"]


def test_reject_of_the_only_recipient_is_the_smtp_reply(h: Harness) -> None:
    activate(
        h,
        DEMO,
        'require "reject";\r\nif header :contains "subject" "offer" { reject "No offers,\r\nthanks."; }',
    )
    with smtplib.SMTP("127.0.0.1", h.smtp("mx")) as smtp, pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.sendmail(SENDER, [DEMO], message("special offer"))
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error == b"5.7.1 No offers, thanks."
    assert subjects(h, DEMO) == []
    assert h.call(h.store.queue_list()) == []


def test_reject_among_other_recipients_is_reported_to_the_sender_in_a_dsn(h: Harness) -> None:
    activate(h, DEMO, 'require "ereject"; ereject "Not from you";')
    send(h, message("to both"), to=(DEMO, OTHER))
    assert subjects(h, OTHER) == ["to both"]
    assert subjects(h, DEMO) == []
    ((entry, dsn),) = queued(h)
    assert entry.sender == ""
    assert [r.address for r in entry.recipients] == [SENDER]
    assert "Not from you" in dsn.as_string()


def test_reject_of_a_message_from_the_null_sender_discards_it(h: Harness) -> None:
    activate(h, DEMO, 'require "reject"; reject "no bounces";')
    send(h, message("a bounce"), sender="")
    assert subjects(h, DEMO) == []
    assert h.call(h.store.queue_list()) == []


def test_redirect_forwards_with_an_srs_sender_and_copy_keeps_a_copy(h: Harness) -> None:
    activate(h, DEMO, 'redirect "far@outside.example";')
    activate(h, OTHER, 'require "copy"; redirect :copy "<near@outside.example>";')
    send(h, message("onwards"), to=(DEMO, OTHER))
    assert subjects(h, DEMO) == []
    assert subjects(h, OTHER) == ["onwards"]
    found = sorted(queued(h), key=lambda q: q[0].recipients[0].address)
    assert [[r.address for r in entry.recipients] for entry, _ in found] == [
        ["far@outside.example"],
        ["near@outside.example"],
    ]
    for (entry, forwarded), via in zip(found, (DEMO, OTHER), strict=True):
        assert srs.reverse(entry.sender.rpartition("@")[0], h.call(h.store.server_secret("srs"))) == SENDER
        assert forwarded["Subject"] == "onwards"
        assert forwarded["X-Sieve-Redirected-From"] == via  # who redirected it: loop control


def test_a_redirect_to_something_that_is_no_address_keeps_the_message_and_tells_the_account(
    h: Harness,
) -> None:
    activate(h, DEMO, 'redirect "not an address";')
    send(h, message("first"))
    send(h, message("second"))
    assert subjects(h, DEMO) == ["first", 'Your mail filter "main" failed', "second"]
    assert h.call(h.store.queue_list()) == []


def vacation_reply(h: Harness) -> list[tuple[QueuedMessage, email.message.EmailMessage]]:
    return [(entry, reply) for entry, reply in queued(h) if reply["Auto-Submitted"]]


def test_vacation_replies_once_per_sender_from_the_null_sender(h: Harness) -> None:
    activate(
        h, DEMO, 'require "vacation";\r\nvacation :days 3 "I am away until Monday.\r\nNo mail is read.";'
    )
    raw = message("are you there")
    send(h, raw)
    ((entry, reply),) = vacation_reply(h)
    assert entry.sender == ""
    assert [r.address for r in entry.recipients] == [SENDER]
    assert reply["To"] == SENDER
    assert reply["From"] == DEMO
    assert reply["Subject"] == "Auto: are you there"
    assert reply["In-Reply-To"] == "<are.you.there@remote.example>"
    assert reply["References"] == "<are.you.there@remote.example>"
    assert reply["Auto-Submitted"].startswith("auto-replied")
    assert reply.get_content().replace("\r\n", "\n") == "I am away until Monday.\nNo mail is read.\n"
    send(h, message("again"))  # the same sender within 3 days: no second reply
    send(h, message("from carol", sender="carol@sender.example"), sender="carol@sender.example")
    assert sorted(r.recipients[0].address for r, _ in vacation_reply(h)) == [SENDER, "carol@sender.example"]
    assert subjects(h, DEMO) == ["are you there", "again", "from carol"]  # vacation keeps the message


@pytest.mark.parametrize(
    ("extra", "sender"),
    [
        (b"List-Id: <dev.lists.example>\r\n", SENDER),
        (b"Precedence: bulk\r\n", SENDER),
        (b"Auto-Submitted: auto-generated\r\n", SENDER),
        (b"", "mailer-daemon@sender.example"),
        (b"", ""),
    ],
)
def test_vacation_does_not_answer_lists_bulk_automatic_or_null_sender_mail(
    h: Harness, extra: bytes, sender: str
) -> None:
    activate(h, DEMO, 'require "vacation"; vacation "away";')
    send(h, extra + message("list mail"), sender=sender)
    assert vacation_reply(h) == []
    assert subjects(h, DEMO) == ["list mail"]


def test_vacation_only_answers_mail_that_names_the_recipient(h: Harness) -> None:
    activate(h, DEMO, 'require "vacation"; vacation :addresses "alias@example.test" "away";')
    send(h, message("bcc to me", to="someone@else.example"))
    assert vacation_reply(h) == []
    send(h, message("to my alias", to="Alias <alias@example.test>"))
    assert len(vacation_reply(h)) == 1


def test_a_script_that_fails_keeps_the_message_and_tells_the_account_once_per_version(h: Harness) -> None:
    activate(h, DEMO, 'require ["reject"]; reject "no"; keep;')  # reject with keep: a runtime error
    send(h, message("one"))
    send(h, message("two"))
    assert subjects(h, DEMO) == ["one", 'Your mail filter "main" failed', "two"]
    notice = h.content(h.messages(DEMO)[1])
    assert b"reject cannot go with keep" in notice
    assert b"Auto-Submitted: auto-generated" in notice
    activate(h, DEMO, 'require ["reject"]; reject "no"; keep; # a new version, still failing')
    send(h, message("three"))
    assert subjects(h, DEMO).count('Your mail filter "main" failed') == 2
    assert subjects(h, DEMO)[-2:] == ["three", 'Your mail filter "main" failed']


def test_a_stored_script_that_does_not_compile_keeps_every_message(h: Harness) -> None:
    activate(h, DEMO, 'fileinto "x";')  # no require: a check error the store does not look for
    send(h, message("kept"))
    assert subjects(h, DEMO) == ["kept", 'Your mail filter "main" failed']
    notice = h.content(h.messages(DEMO)[1])
    assert b"line 1, column 1" in notice


def test_a_script_sees_the_fields_earlier_stages_added_and_keep_goes_where_they_put_the_copy(
    tmp_path: Path,
) -> None:
    def junk(message: Message, plan: DeliveryPlan) -> None:
        for recipient in plan.recipients:
            recipient.prepend_header("X-Spam", "yes")
            recipient.file_into("Junk", special_use="\\Junk")

    harness = Harness(tmp_path)
    try:
        harness.pipeline = DeliveryPipeline(
            harness.store,
            [FunctionStage("spam", junk), SieveStage(harness.store, HOSTNAME)],
            hostname=HOSTNAME,
        )
        activate(
            harness, DEMO, 'require "fileinto"; if header :is "x-spam" "yes" { keep; fileinto "INBOX"; }'
        )
        send(harness, message("spammy"))
        assert subjects(harness, DEMO, "Junk") == ["spammy"]
        assert subjects(harness, DEMO) == ["spammy"]
        (copy,) = harness.messages(DEMO)
        assert harness.content(copy).startswith(b"X-Spam: yes\r\n")
    finally:
        harness.stop()


def test_accounts_without_an_active_script_are_not_filtered(h: Harness) -> None:
    h.call(h.store.put_sieve_script(h.ids[DEMO], "inactive", "discard;", LIMITS))
    send(h, message("through"))
    assert subjects(h, DEMO) == ["through"]


def test_fileinto_create_specialuse_and_mailboxid_at_delivery(h: Harness) -> None:
    work = h.call(h.store.create_mailbox(h.ids[DEMO], "Work"))
    activate(
        h,
        DEMO,
        'require ["fileinto", "mailbox", "special-use", "mailboxid", "variables", "envelope"];\r\n'
        'if header :matches "subject" "new *" { fileinto :create "Projects/${1}"; }\r\n'
        'elsif header :is "subject" "junk" { fileinto :specialuse "\\\\Junk" "Nowhere"; }\r\n'
        f'elsif header :is "subject" "work" {{ fileinto :mailboxid "M{work.uidvalidity}" "Elsewhere"; }}\r\n',
    )
    send(h, message("new alpha"))
    send(h, message("new alpha"))  # the second time the mailbox exists
    send(h, message("junk"))
    send(h, message("work"))
    assert subjects(h, DEMO, "Projects/alpha") == ["new alpha", "new alpha"]
    junk = h.call(h.store.list_mailboxes(h.ids[DEMO]))
    (junk_name,) = [m.name for m in junk if m.special_use and "\\Junk" in m.special_use]
    assert subjects(h, DEMO, junk_name) == ["junk"]
    assert subjects(h, DEMO, "Work") == ["work"]
    assert subjects(h, DEMO) == []


def test_body_and_environment_tests_at_delivery(h: Harness) -> None:
    h.call(h.store.create_mailbox(h.ids[DEMO], "Local"))
    activate(
        h,
        DEMO,
        'require ["fileinto", "body", "environment"];\r\n'
        'if allof (body :contains "secret word", environment :is "remote-ip" "127.0.0.1")\r\n'
        '{ fileinto "Local"; }\r\n',
    )
    send(h, message("has it").replace(b"body of", b"the secret word in the body of"))
    send(h, message("has not"))
    assert subjects(h, DEMO, "Local") == ["has it"]
    assert subjects(h, DEMO) == ["has not"]


def test_duplicate_discards_the_second_copy_of_a_message_id(h: Harness) -> None:
    activate(
        h,
        DEMO,
        'require ["duplicate", "variables"];\r\n'
        "if duplicate { discard; stop; }\r\n"
        'if header :matches "subject" "ticket *" {\r\n'
        '  if duplicate :uniqueid "${1}" :handle "t" { discard; }\r\n'
        "}\r\n",
    )
    send(h, message("first"))
    send(h, message("first"))  # the same Message-ID (the harness makes it of the subject)
    raw = message("ticket 42")
    send(h, raw)
    send(h, raw.replace(b"<ticket.42@", b"<other@"))  # another message id, the same ticket
    send(h, message("ticket 43"))
    assert subjects(h, DEMO) == ["first", "ticket 42", "ticket 43"]
    send(h, message("no id").replace(b"Message-ID: <no.id@remote.example>\r\n", b""))
    send(h, message("no id").replace(b"Message-ID: <no.id@remote.example>\r\n", b""))
    assert subjects(h, DEMO)[-2:] == ["no id", "no id"]  # no id: never a duplicate


def test_include_takes_the_accounts_other_scripts(h: Harness) -> None:
    h.call(h.store.create_mailbox(h.ids[DEMO], "Lists"))
    h.call(h.store.put_sieve_script(h.ids[DEMO], "lists", 'require "fileinto"; fileinto "Lists";', LIMITS))
    activate(
        h,
        DEMO,
        'require "include";\r\nif exists "List-Id" { include "lists"; }\r\n'
        'include :optional "not-there";\r\n',
    )
    send(h, b"List-Id: <x.example>\r\n" + message("from a list"))
    send(h, message("personal"))
    assert subjects(h, DEMO, "Lists") == ["from a list"]
    assert subjects(h, DEMO) == ["personal"]


def test_notify_sends_a_mailto_notification_from_the_null_sender(h: Harness) -> None:
    activate(
        h,
        DEMO,
        'require "enotify";\r\nnotify :message "New mail" "mailto:phone@sms.example?subject=Mail";\r\n',
    )
    send(h, message("hello"))
    send(h, b"Auto-Submitted: auto-generated\r\n" + message("a robot"))  # never notified (RFC 5436 2.7)
    ((entry, note),) = queued(h)
    assert entry.sender == ""
    assert [r.address for r in entry.recipients] == ["phone@sms.example"]
    assert note["Auto-Submitted"] == "auto-notified"
    assert note["Subject"] == "Mail"
    assert note["From"] == DEMO
    assert subjects(h, DEMO) == ["hello", "a robot"]  # notify keeps the message


def test_editheader_changes_each_copy_as_it_was_when_the_action_was_taken(h: Harness) -> None:
    h.call(h.store.create_mailbox(h.ids[DEMO], "Before"))
    h.call(h.store.create_mailbox(h.ids[DEMO], "After"))
    activate(
        h,
        DEMO,
        'require ["editheader", "fileinto", "copy"];\r\n'
        'addheader "X-Filed" "first";\r\n'
        'fileinto :copy "Before";\r\n'
        'deleteheader "Subject";\r\n'
        'addheader :last "Subject" "Grüße, renamed";\r\n'
        'deleteheader "Received";\r\n'  # RFC 5293 section 6: trace fields cannot be deleted
        'fileinto "After";\r\n'
        "keep;\r\n",
    )
    trace = b"Received: from far.example by near.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    send(h, trace + message("orig"))
    (before,) = h.messages(DEMO, "Before")
    (after,) = h.messages(DEMO, "After")
    (kept,) = h.messages(DEMO)
    first = h.content(before)
    assert first.startswith(b"X-Filed: first\r\n")
    assert b"Subject: orig\r\n" in first
    assert first.endswith(b"\r\n\r\nbody of orig\r\n")
    last = email.message_from_bytes(h.content(after), policy=email.policy.default)
    assert str(last["Subject"]) == "Grüße, renamed"  # non-ASCII as RFC 2047 encoded words
    assert last["Received"] is not None
    assert b"=?utf-8?" in h.content(after)
    assert h.content(after).isascii()
    assert h.content(after).endswith(b"\r\n\r\nbody of orig\r\n")
    assert after.content_id == kept.content_id  # the keep after the same edits shares the text
    assert before.content_id != after.content_id
    assert before.size == len(first)


def test_a_redirect_carries_the_header_the_script_edited(h: Harness) -> None:
    activate(
        h,
        DEMO,
        'require ["editheader"];\r\n'
        'addheader "X-Forwarded-By" "demo";\r\n'
        'deleteheader :contains "subject" "secret";\r\n'
        'deleteheader "X-Sieve-Redirected-From";\r\n'  # loop control is protected
        'redirect "far@outside.example";\r\n',
    )
    send(h, b"X-Sieve-Redirected-From: someone@else.example\r\n" + message("secret plans"))
    ((entry, forwarded),) = queued(h)
    assert [r.address for r in entry.recipients] == ["far@outside.example"]
    assert forwarded["X-Forwarded-By"] == "demo"
    assert forwarded["Subject"] is None
    assert forwarded.get_all("X-Sieve-Redirected-From") == [DEMO, "someone@else.example"]
    assert forwarded.get_content().strip() == "body of secret plans"


def test_vacation_fcc_stores_a_copy_of_the_reply_only_when_it_is_sent(h: Harness) -> None:
    activate(
        h,
        DEMO,
        'require ["vacation", "fcc", "imap4flags"];\r\n'
        'vacation :days 3 :fcc "Sent" :flags "\\\\Seen" :subject "Away" "I am away.";\r\n',
    )
    send(h, message("are you there"))
    send(h, message("again"))  # no second reply within 3 days, so no second copy
    (sent,) = h.messages(DEMO, "Sent")
    assert sent.flags == frozenset({"\\Seen"})
    copy = email.message_from_bytes(h.content(sent), policy=email.policy.default)
    assert copy["Subject"] == "Away"
    assert copy["To"] == SENDER
    ((_entry, reply),) = vacation_reply(h)
    assert reply["Message-ID"] == copy["Message-ID"]  # the copy is the reply that went
    assert subjects(h, DEMO) == ["are you there", "again"]


def test_notify_fcc_stores_the_notification(h: Harness) -> None:
    activate(
        h,
        DEMO,
        'require ["enotify", "fcc", "mailbox"];\r\n'
        'notify :fcc "Notes" :create :message "New mail" "mailto:phone@sms.example";\r\n',
    )
    send(h, message("hello"))
    ((_entry, note),) = queued(h)
    (stored,) = h.messages(DEMO, "Notes")
    assert email.message_from_bytes(h.content(stored))["Message-ID"] == note["Message-ID"]


def test_regex_and_metadata_tests_at_delivery(h: Harness) -> None:
    account = h.ids[DEMO]
    h.call(h.store.create_mailbox(account, "Tickets"))
    inbox = h.call(h.store.get_mailbox(account, "INBOX"))
    assert inbox is not None
    limits = MetadataLimits(max_value_size=1024, max_entries=10, max_account_octets=65536)
    h.call(h.store.set_metadata(account, inbox.id, {"/private/filing": b"tickets"}, limits))
    activate(
        h,
        DEMO,
        'require ["regex", "variables", "fileinto", "mboxmetadata"];\r\n'
        'if allof(header :regex "subject" "^\\\\[ticket #([0-9]+)\\\\]", '
        'metadata :is "INBOX" "/private/filing" "tickets") {\r\n'
        '  fileinto "Tickets";\r\n'
        "}\r\n",
    )
    send(h, message("[ticket #42] printer"))
    send(h, message("[ticket #x] not a number"))
    assert subjects(h, DEMO, "Tickets") == ["[ticket #42] printer"]
    assert subjects(h, DEMO) == ["[ticket #x] not a number"]


def test_spamtest_reads_the_spam_stages_score(tmp_path: Path) -> None:
    def score(message: Message, plan: DeliveryPlan) -> None:
        message.source.seek(0)
        subject = email.message_from_bytes(message.source.read())["Subject"]
        plan.spam_score = (float(subject.split()[-1]), 6.0)

    harness = Harness(tmp_path)
    try:
        harness.pipeline = DeliveryPipeline(
            harness.store,
            [FunctionStage("spam", score), SieveStage(harness.store, HOSTNAME)],
            hostname=HOSTNAME,
        )
        harness.call(harness.store.create_mailbox(harness.ids[DEMO], "Spam"))
        activate(
            harness,
            DEMO,
            'require ["spamtestplus", "fileinto", "relational", "comparator-i;ascii-numeric"];\r\n'
            'if spamtest :value "ge" :comparator "i;ascii-numeric" "6" { fileinto "Spam"; }\r\n'
            'elsif spamtest :percent :value "ge" :comparator "i;ascii-numeric" "40" { fileinto "Spam"; }\r\n',
        )
        send(harness, message("score 1.5"))  # 1 + 9 * 0.25 -> 3, 25 %
        send(harness, message("score 2.5"))  # 42 %
        send(harness, message("score 9"))  # past the threshold: 10
        assert subjects(harness, DEMO, "Spam") == ["score 2.5", "score 9"]
        assert subjects(harness, DEMO) == ["score 1.5"]
    finally:
        harness.stop()
