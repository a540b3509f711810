"""Teaching rspamd (docs/decisions/0086), with Debian's rspamd and a Redis of its own on loopback: a message a
person moves into Junk is learned as spam, one moved out of it as ham, through the store's change events
(whatever client made the move); moves elsewhere and mail delivered into Junk teach nothing."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.message import parse_message
from postoffice.spam.learning import RspamdController, SpamLearner
from tests.delivery.harness import DEMO, Harness
from tests.support.rspamd import Rspamd, running_rspamd


@pytest.fixture(scope="module")
def rspamd() -> Iterator[Rspamd]:
    with running_rspamd(learning=True) as started:
        yield started


def words(seed: int) -> bytes:
    """A message with enough words for rspamd's Bayes filter to learn it (a few are skipped as too small)."""
    chooser = random.Random(seed)
    vocabulary = "alpha beta gamma offer money prize meeting lunch report invoice urgent free click team"
    text = " ".join(chooser.choice(vocabulary.split()) for _ in range(300))
    return (
        f"From: a@remote.example\r\nTo: {DEMO}\r\nSubject: words {seed}\r\n"
        f"Message-ID: <w{seed}@remote.example>\r\n\r\n{text}\r\n"
    ).encode()


def put(h: Harness, mailbox_id: int, raw: bytes) -> None:
    h.call(h.store.append(mailbox_id, io.BytesIO(raw), parse_message(io.BytesIO(raw))))


def test_moves_into_and_out_of_junk_teach_spam_and_ham(tmp_path: Path, rspamd: Rspamd) -> None:
    h = Harness(tmp_path)
    try:
        learner = SpamLearner(h.store, RspamdController(rspamd.controller, timeout=10))

        async def start() -> None:
            learner.start()

        h.call(start())
        account = h.ids[DEMO]
        inbox = h.call(h.store.get_mailbox(account, "INBOX"))
        junk = h.call(h.store.get_mailbox(account, "Junk"))
        trash = h.call(h.store.get_mailbox(account, "Trash"))
        assert inbox is not None
        assert junk is not None
        assert trash is not None
        for seed in (1, 2, 3):
            put(h, inbox.id, words(seed))
        h.call(h.store.copy_messages(inbox.id, [1, 2], junk.id, move=True))  # a person's "this is spam"
        h.call(learner.idle())
        assert learner.learned == 2
        assert rspamd.learns() == {"spam": 2, "ham": 0}
        h.call(h.store.copy_messages(junk.id, [1], inbox.id, move=True))  # "not spam after all"
        h.call(h.store.copy_messages(junk.id, [2], trash.id, move=True))  # deleted: teaches nothing
        h.call(learner.idle())
        assert learner.learned == 3  # the ham; the move into Trash taught nothing
        # learned as ham (whether rspamd also takes it off spam depends on when its learn cache is written)
        assert rspamd.learns()["ham"] == 1
    finally:
        h.call(learner.stop())
        h.stop()


def test_mail_delivered_into_junk_teaches_nothing(tmp_path: Path, rspamd: Rspamd) -> None:
    h = Harness(tmp_path)
    try:
        learner = SpamLearner(h.store, RspamdController(rspamd.controller, timeout=10))

        async def start() -> None:
            learner.start()

        h.call(start())
        junk = h.call(h.store.get_mailbox(h.ids[DEMO], "Junk"))
        assert junk is not None
        before = rspamd.learns()
        put(h, junk.id, words(9))
        h.call(learner.idle())
        assert learner.learned == 0
        assert rspamd.learns() == before
    finally:
        h.call(learner.stop())
        h.stop()
