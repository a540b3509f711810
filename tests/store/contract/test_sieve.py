"""Contract: Sieve scripts (RFC 5228, ManageSieve RFC 5804; docs/decisions/0082): per account, by name
(case-sensitive), at most one active, limits checked in the transaction that would exceed them, versions that
change with every text; and what a delivery writes for Sieve: vacation replies at most once per sender,
handle and period, and a script's error reported once per version."""

from __future__ import annotations

import asyncio
import io
import time

import pytest

from postoffice.store import (
    AlreadyExists,
    Delivery,
    DuplicateMark,
    GeneratedMessage,
    MailStore,
    MessageText,
    NotFound,
    OutboundMessage,
    OutboundRecipient,
    ScriptErrorNotice,
    SieveLimits,
    SieveQuotaExceeded,
    SieveScriptActive,
    VacationReply,
)
from tests.store.contract.harness import Backend, accounts, covers, inbox_of, message, parse

S = MailStore

ROOMY = SieveLimits(max_scripts=10, max_script_octets=10_000, max_account_octets=20_000)


@covers(
    S.put_sieve_script,
    S.get_sieve_script,
    S.list_sieve_scripts,
    S.activate_sieve_script,
    S.active_sieve_scripts,
)
def test_scripts_are_kept_per_account_by_name_with_one_active(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        first = await store.put_sieve_script(demo, "main", "keep;\r\n# €\r\n", ROOMY)
        assert (first.name, first.text, first.active, first.account_id) == (
            "main",
            "keep;\r\n# €\r\n",
            False,
            demo,
        )
        assert first.address == "demo@example.test"
        assert first.octets == len("keep;\r\n# €\r\n".encode())
        await store.put_sieve_script(demo, "Main", "discard;", ROOMY)  # names are case-sensitive
        await store.put_sieve_script(other, "main", "stop;", ROOMY)
        assert [s.name for s in await store.list_sieve_scripts(demo)] == ["Main", "main"]
        assert (await store.get_sieve_script(other, "main")).text == "stop;"  # type: ignore[union-attr]
        assert await store.get_sieve_script(demo, "none") is None
        assert await store.get_sieve_script(demo, "MAIN") is None
        assert await store.active_sieve_scripts([demo, other]) == {}

        await store.activate_sieve_script(demo, "main")
        await store.activate_sieve_script(other, "main")
        active = await store.active_sieve_scripts([demo, other, demo, 999])
        assert {a: s.name for a, s in active.items()} == {demo: "main", other: "main"}
        assert active[demo].text.startswith("keep;")
        assert active[other].text == "stop;"
        await store.activate_sieve_script(demo, "Main")  # the one before is active no more
        assert [(s.name, s.active) for s in await store.list_sieve_scripts(demo)] == [
            ("Main", True),
            ("main", False),
        ]
        with pytest.raises(NotFound):
            await store.activate_sieve_script(demo, "none")
        assert (await store.active_sieve_scripts([demo]))[demo].name == "Main"  # unchanged
        await store.activate_sieve_script(demo, None)
        assert await store.active_sieve_scripts([demo]) == {}
        assert (await store.active_sieve_scripts([other]))[other].name == "main"  # another account's stays
        with pytest.raises(NotFound):
            await store.put_sieve_script(12345, "x", "keep;", ROOMY)

    backend.run(scenario)


@covers(S.put_sieve_script)
def test_a_new_text_gets_a_new_version_and_keeps_the_script_active(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        first = await store.put_sieve_script(demo, "main", "keep;", ROOMY)
        await store.activate_sieve_script(demo, "main")
        second = await store.put_sieve_script(demo, "main", "discard;", ROOMY)
        assert second.id == first.id
        assert second.version > first.version
        assert second.active
        other = await store.put_sieve_script(demo, "other", "keep;", ROOMY)
        assert other.version > second.version
        await store.delete_sieve_script(demo, "other")
        again = await store.put_sieve_script(demo, "other", "keep;", ROOMY)
        assert again.version > other.version  # never reused, also after a deletion

    backend.run(scenario)


@covers(S.rename_sieve_script, S.delete_sieve_script)
def test_rename_and_delete_keep_names_unique_and_the_active_script(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        kept = await store.put_sieve_script(demo, "a", "keep;", ROOMY)
        await store.put_sieve_script(demo, "b", "discard;", ROOMY)
        await store.put_sieve_script(other, "c", "stop;", ROOMY)
        await store.activate_sieve_script(demo, "a")
        await store.rename_sieve_script(demo, "a", "c")  # "c" of another account is no clash
        renamed = await store.get_sieve_script(demo, "c")
        assert renamed is not None
        assert renamed.active
        assert renamed.version == kept.version
        assert await store.get_sieve_script(demo, "a") is None
        with pytest.raises(AlreadyExists):
            await store.rename_sieve_script(demo, "c", "b")
        with pytest.raises(NotFound):
            await store.rename_sieve_script(demo, "a", "d")
        await store.rename_sieve_script(demo, "c", "c")  # to itself: nothing changes
        with pytest.raises(SieveScriptActive):
            await store.delete_sieve_script(demo, "c")
        await store.delete_sieve_script(demo, "b")
        with pytest.raises(NotFound):
            await store.delete_sieve_script(demo, "b")
        assert [s.name for s in await store.list_sieve_scripts(demo)] == ["c"]
        await store.remove_account("demo@example.test")  # its scripts go with it
        assert await store.list_sieve_scripts(demo) == []
        assert [s.name for s in await store.list_sieve_scripts(other)] == ["c"]

    backend.run(scenario)


@covers(S.put_sieve_script)
def test_limits_refuse_what_would_exceed_them_and_change_nothing(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        limits = SieveLimits(max_scripts=2, max_script_octets=100, max_account_octets=150)
        with pytest.raises(SieveQuotaExceeded) as too_big:
            await store.put_sieve_script(demo, "a", "#" * 101, limits)
        assert too_big.value.kind == "maxsize"
        await store.put_sieve_script(demo, "a", "#" * 100, limits)
        with pytest.raises(SieveQuotaExceeded) as over:
            await store.put_sieve_script(demo, "b", "#" * 51, limits)
        assert over.value.kind == "quota"
        await store.put_sieve_script(demo, "b", "#" * 50, limits)
        await store.put_sieve_script(demo, "a", "#" * 90, limits)  # a replaced script counts its new size
        with pytest.raises(SieveQuotaExceeded) as many:
            await store.put_sieve_script(demo, "c", "#", limits)
        assert many.value.kind == "maxscripts"
        assert [(s.name, len(s.text)) for s in await store.list_sieve_scripts(demo)] == [("a", 90), ("b", 50)]
        # many clients at once cannot go over together: one transaction checks and writes
        await store.delete_sieve_script(demo, "b")
        results = await asyncio.gather(
            *(store.put_sieve_script(demo, f"n{i}", "#", limits) for i in range(5)), return_exceptions=True
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert len(await store.list_sieve_scripts(demo)) == 2

    backend.run(scenario)


def _reply(account: int, sender: str, handle: str = "h", period: float = 3600.0) -> VacationReply:
    data = b"From: demo@example.test\r\nTo: " + sender.encode() + b"\r\nSubject: Auto: away\r\n\r\naway\r\n"
    outbound = OutboundMessage("", [OutboundRecipient(sender, notify="NEVER")])
    return VacationReply(account, handle, sender, period, GeneratedMessage(data, outbound))


@covers(S.commit_delivery)
def test_a_vacation_reply_goes_once_per_sender_and_handle_within_its_period(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        await store.add_domain("remote.test")

        async def send(*replies: VacationReply) -> int:
            before = len(await store.queue_list())
            await store.commit_delivery(Delivery([], vacations=replies))
            return len(await store.queue_list()) - before

        assert await send(_reply(demo, "friend@remote.test")) == 1
        assert await send(_reply(demo, "Friend@Remote.test")) == 0  # the same sender, any case
        assert await send(_reply(demo, "friend@remote.test", handle="other")) == 1
        assert await send(_reply(other, "friend@remote.test")) == 1  # another account
        assert await send(_reply(demo, "else@remote.test"), _reply(demo, "else@remote.test")) == 1
        assert await send(_reply(demo, "friend@remote.test", period=0)) == 1  # :seconds 0: every time
        queued = await store.queue_list()
        assert all(q.sender == "" for q in queued)
        bad = _reply(demo, "x@remote.test")
        not_null = OutboundMessage("demo@example.test", bad.message.outbound.recipients)
        wrong = bad._replace(message=GeneratedMessage(bad.message.data, not_null))
        with pytest.raises(ValueError, match="null sender"):  # RFC 3834 3.3: never a reply to a reply
            await store.commit_delivery(Delivery([], vacations=[wrong]))

    backend.run(scenario)


@covers(S.commit_delivery)
def test_a_script_error_is_reported_into_the_inbox_once_per_version(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        inbox = await inbox_of(store, demo)
        script = await store.put_sieve_script(demo, "main", "keep;", ROOMY)
        raw = message("Sieve script error")

        def notice(version: int) -> ScriptErrorNotice:
            return ScriptErrorNotice(demo, script.id, version, MessageText(io.BytesIO(raw), parse(raw)))

        await store.commit_delivery(Delivery([], notices=[notice(script.version)]))
        await store.commit_delivery(Delivery([], notices=[notice(script.version)]))
        assert len(await store.list_messages(inbox)) == 1
        reported = await store.get_sieve_script(demo, "main")
        assert reported is not None
        assert reported.error_reported
        newer = await store.put_sieve_script(demo, "main", "discard;", ROOMY)
        assert not newer.error_reported
        await store.commit_delivery(Delivery([], notices=[notice(script.version)]))  # an old version's
        assert len(await store.list_messages(inbox)) == 1
        await store.commit_delivery(Delivery([], notices=[notice(newer.version)]))
        assert len(await store.list_messages(inbox)) == 2
        assert await store.read_content((await store.list_messages(inbox))[-1].content_id) == raw

    backend.run(scenario)


@covers(S.commit_delivery, S.sieve_duplicates_seen)
def test_duplicate_marks_count_as_seen_for_their_period_and_last_starts_it_again(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        now = time.time()
        await store.commit_delivery(Delivery([], duplicates=[DuplicateMark(demo, "k1", 3600)]))
        assert await store.sieve_duplicates_seen(demo, ["k1", "k2"], now) == {"k1"}
        assert await store.sieve_duplicates_seen(other, ["k1"], now) == set()  # per account
        assert await store.sieve_duplicates_seen(demo, ["k1"], now + 7200) == set()  # expired
        # without :last a key still seen keeps its first expiry; with :last the period starts again
        await store.commit_delivery(Delivery([], duplicates=[DuplicateMark(demo, "k1", 100_000)]))
        assert await store.sieve_duplicates_seen(demo, ["k1"], now + 7200) == set()
        await store.commit_delivery(Delivery([], duplicates=[DuplicateMark(demo, "k1", 100_000, last=True)]))
        assert await store.sieve_duplicates_seen(demo, ["k1"], now + 7200) == {"k1"}
        assert await store.sieve_duplicates_seen(demo, [], now) == set()

    backend.run(scenario)
