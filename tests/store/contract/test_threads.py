"""Contract: conversations (docs/decisions/0047). A message joins the conversation of any message of its
account it names (In-Reply-To, References) or that names it (its Message-ID), whichever came first, when their
base subjects agree; copies and moves keep it; another account's copy is its own conversation. Pages of a
folder's conversations, newest head first, in both directions; summaries and members only of the account's
own folders."""

from __future__ import annotations

import io

from postoffice.store import MailStore, ThreadSummary
from tests.store.contract.harness import Backend, accounts, covers, inbox_of, parse

S = MailStore


def mail(mid: str, subject: str, refs: str = "", *, extra: str = "") -> bytes:
    head = f"From: a@example.org\r\nTo: demo@example.test\r\nSubject: {subject}\r\nMessage-ID: <{mid}@x>\r\n"
    if refs:
        references = " ".join(f"<{r}@x>" for r in refs.split())
        head += f"In-Reply-To: <{refs.split()[-1]}@x>\r\nReferences: {references}\r\n"
    return f"{head}{extra}\r\nbody of {mid}\r\n".encode()


async def put(store: MailStore, mailbox_id: int, raw: bytes, flags: tuple[str, ...] = ()) -> int:
    return (await store.append(mailbox_id, io.BytesIO(raw), parse(raw), flags)).uid


@covers(S.append, S.deliver, S.get_messages, S.thread_messages)
def test_replies_join_their_original_whichever_comes_first_and_a_new_subject_starts_anew(
    backend: Backend,
) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        inbox = await inbox_of(store, demo)
        sent = await inbox_of(store, demo, "Sent")
        a = await put(store, inbox, mail("a", "Plans"))
        b = await put(store, sent, mail("b", "Re: Plans", "a"))
        c = await put(store, inbox, mail("d", "RE: [team] plans", "a b c"))  # names c, which comes later
        c_late = await put(store, inbox, mail("c", "Aw: Plans", "a b"))
        lone = await put(store, inbox, mail("e", "Plans"))  # same subject, no reference: alone
        renamed = await put(store, inbox, mail("f", "Something else", "a"))  # a new subject: a new thread
        no_id = await put(store, inbox, b"From: a@example.org\r\nSubject: Plans\r\n\r\nx\r\n")
        g = mail("g", "Re: Plans", "a")
        delivered, _ = await store.deliver(io.BytesIO(g), parse(g), [demo, other])
        infos = {m.uid: m for m in await store.get_messages(inbox, [a, c, c_late, lone, renamed, no_id])}
        (sent_b,) = await store.get_messages(sent, [b])
        thread = infos[a].thread_id
        assert thread != 0
        assert sent_b.thread_id == infos[c].thread_id == infos[c_late].thread_id == thread
        assert len({thread, infos[lone].thread_id, infos[renamed].thread_id, infos[no_id].thread_id}) == 4
        members = await store.thread_messages(demo, [thread])
        assert sorted((m.mailbox_id, m.uid) for m in members) == sorted(
            [(inbox, a), (sent, b), (inbox, c), (inbox, c_late), (inbox, delivered.uid)]
        )
        assert await store.thread_messages(demo, [thread], [sent]) == [sent_b]
        assert len(await store.thread_messages(demo, [thread], limit=2)) == 2
        # the other account's copy of g is a conversation of its own, not reachable from demo
        other_inbox = await inbox_of(store, other)
        (theirs,) = await store.list_messages(other_inbox)
        assert theirs.thread_id not in (0, thread)
        assert await store.thread_messages(demo, [theirs.thread_id]) == []
        assert await store.thread_messages(other, [thread]) == []

    backend.run(scenario)


@covers(S.copy_messages, S.thread_summaries)
def test_copies_and_moves_keep_the_conversation_and_summaries_count_the_folders_asked(
    backend: Backend,
) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        sent = await inbox_of(store, demo, "Sent")
        archive = await inbox_of(store, demo, "Archive")
        a = await put(store, inbox, mail("a", "Trip"), ("\\Seen",))
        await put(store, sent, mail("b", "Re: Trip", "a"), ("\\Seen", "\\Flagged"))
        c = await put(store, inbox, mail("c", "Re: Trip", "a b"))
        ((_, moved),) = await store.copy_messages(inbox, [c], archive, move=True)
        ((_, copied),) = await store.copy_messages(inbox, [a], archive)
        (head,) = await store.get_messages(inbox, [a])
        found = await store.get_messages(archive, [moved, copied])
        assert {m.thread_id for m in found} == {head.thread_id}
        summaries = await store.thread_summaries(demo, [head.thread_id, 0, 999_999], [inbox, sent, archive])
        assert summaries == {head.thread_id: ThreadSummary(count=4, unseen=1, flagged=1)}
        assert await store.thread_summaries(demo, [head.thread_id], [inbox]) == {
            head.thread_id: ThreadSummary(1, 0, 0)
        }
        other = (await store.add_account("other@example.test", "x")).id
        assert await store.thread_summaries(other, [head.thread_id], [inbox, sent]) == {}

    backend.run(scenario)


@covers(S.conversations)
def test_pages_of_conversations_go_newest_head_first_in_both_directions(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        # 12 conversations t0..t11 of 3 messages each, interleaved: t_k's messages come at rounds 0, 1, 2,
        # except t3, whose last reply comes at the very end (so its head is the newest of all)
        uids: dict[int, list[int]] = {}
        for round_ in range(3):
            for k in range(12):
                if k == 3 and round_ == 2:
                    continue
                refs = " ".join(f"t{k}r{r}" for r in range(round_))
                raw = mail(f"t{k}r{round_}", f"Topic {k}", refs)
                uids.setdefault(k, []).append(await put(store, inbox, raw))
        uids[3].append(await put(store, inbox, mail("t3r2", "Topic 3", "t3r0 t3r1")))
        alone = await put(store, inbox, b"From: a@example.org\r\nSubject: x\r\n\r\nx\r\n")
        heads = [alone, uids[3][-1]] + [uids[k][-1] for k in (11, 10, 9, 8, 7, 6, 5, 4, 2, 1, 0)]

        async def page(**kw: int) -> list[int]:
            return [m.uid for m in await store.conversations(inbox, **kw)]

        assert await page(limit=100) == heads
        first = await page(limit=5)
        assert first == heads[:5]
        second = await page(before=first[-1], limit=5)
        assert second == heads[5:10]
        third = await page(before=second[-1], limit=5)
        assert third == heads[10:]
        assert await page(after=second[0], limit=5) == first  # back from the second page
        assert await page(after=third[0], limit=5) == second
        assert await page(after=heads[0], limit=5) == []
        assert await page(after=0, limit=3) == heads[-3:]
        assert await page(limit=0) == []
        # a conversation whose head is above the bound is not on the page below, however old its others
        assert uids[3][0] < second[-1]
        assert all(uid not in second + third for uid in uids[3])

    backend.run(scenario)
