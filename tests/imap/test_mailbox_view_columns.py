"""`MailboxView.columns` (what SORT and THREAD read of 100,000 messages) gives, for any UIDs of the view, what
the general walk `entries` gives: with messages added and expunged after the snapshot, for every message or a
subset."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap import mailbox_view
from postoffice.imap.mailbox_view import MailboxView
from postoffice.store.api import MailboxChanges, MailboxInfo, MessageInfo, build_snapshot


def message(uid: int, modseq: int) -> MessageInfo:
    return MessageInfo(uid, 1, uid, frozenset(), 1000.0 + uid * 7 % 13, 100 + uid % 5, modseq, 5000 + uid)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 30),
    st.integers(0, 6),
    st.sets(st.integers(1, 40)),
    st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_columns_are_what_entries_give(
    in_snapshot: int, added: int, expunge: set[int], pick: list[bool]
) -> None:
    info = MailboxInfo(1, 1, "INBOX", None, 7, in_snapshot + 1, in_snapshot, 0, True)
    view = MailboxView(
        build_snapshot(info, 10, [message(uid, 10) for uid in range(1, in_snapshot + 1)]), read_only=False
    )
    new = [message(uid, 11) for uid in range(in_snapshot + 1, in_snapshot + added + 1)]
    gone = sorted(uid for uid in expunge if uid <= in_snapshot + added)
    view.apply(MailboxChanges(new, gone, 12))
    view.take_expunges()  # told: the numbers shift
    uids = [uid for uid, chosen in zip(view.uids, pick, strict=False) if chosen]
    saved = mailbox_view.FEW_FACTOR
    try:
        for factor in (saved, 1, 10**9):  # one pass over the view, or a bisection per UID (a few UIDs)
            mailbox_view.FEW_FACTOR = factor
            for asked in (list(view.uids), uids):
                entries = list(view.entries(asked))
                columns = view.columns(asked)
                assert columns.seqs == [e[0] for e in entries]
                assert columns.content_ids == [e[3] for e in entries]
                assert columns.sizes == [e[4] for e in entries]
                assert columns.internaldates == [e[5] for e in entries]
    finally:
        mailbox_view.FEW_FACTOR = saved
