"""Contract: domains, accounts, aliases and recipient resolution (`postoffice.directory.resolver` rules on
the store's data), including changes made through another store object (another process, e.g. the CLI)."""

from __future__ import annotations

import pytest

from postoffice.store import DEFAULT_MAILBOXES, AlreadyExists, MailStore, NotFound, StoreError
from tests.store.contract.harness import Backend, accounts, covers, deliver, message

S = MailStore


@covers(
    S.add_domain,
    S.remove_domain,
    S.list_domains,
    S.add_account,
    S.get_account,
    S.get_account_by_id,
    S.list_accounts,
    S.add_alias,
    S.remove_alias,
    S.list_aliases,
    S.get_alias,
    S.resolve_recipient,
)
def test_domains_accounts_and_aliases_follow_the_directory_rules(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        await store.add_domain("Other.Example")
        assert [d.name for d in await store.list_domains()] == ["example.test", "other.example"]
        with pytest.raises(AlreadyExists):
            await store.add_domain("EXAMPLE.test")
        with pytest.raises(AlreadyExists):
            await store.add_account("Demo@Example.Test", "h")
        with pytest.raises(NotFound):
            await store.add_account("x@unknown.test", "h")
        with pytest.raises(StoreError):
            await store.add_account("no-domain", "h")
        with pytest.raises(StoreError):
            await store.add_alias("team@example.test", ["not-an-address"])
        with pytest.raises(StoreError):
            await store.add_alias("team@example.test", [])
        await store.add_alias("away@example.test", ["someone@Elsewhere.test"])  # forwarded outside
        away = await store.resolve_recipient("away@example.test")
        assert (away.status, away.account_ids, away.remote) == ("local", [], ["someone@elsewhere.test"])
        await store.add_alias("team@example.test", ["demo@example.test", "OTHER@example.test"])
        await store.add_alias("@example.test", ["demo@example.test"])
        with pytest.raises(AlreadyExists):
            await store.add_alias("Team@example.test", ["demo@example.test"])
        account = await store.get_account("DEMO@example.TEST")
        assert account is not None
        assert (account.id, account.address, account.domain) == (
            demo,
            "demo@example.test",
            "example.test",
        )
        assert account.password_hash == "hash"
        assert await store.get_account("nobody@example.test") is None
        assert await store.get_account_by_id(demo) == account
        assert await store.get_account_by_id(demo + other + 1000) is None
        assert [a.address for a in await store.list_accounts()] == ["demo@example.test", "other@example.test"]
        assert [a.address for a in await store.list_accounts("EXAMPLE.test")] == [
            "demo@example.test",
            "other@example.test",
        ]
        assert await store.list_accounts("other.example") == []
        with pytest.raises(StoreError):
            await store.remove_domain("example.test")  # accounts and aliases still use it
        assert (await store.resolve_recipient("team@example.test")).account_ids == [demo, other]
        assert (await store.resolve_recipient("Other+tag@Example.test")).account_ids == [other]
        assert (await store.resolve_recipient("nobody@example.test")).account_ids == [demo]
        assert (await store.resolve_recipient("x@elsewhere.test")).status == "foreign"
        await store.remove_alias("@example.test")
        with pytest.raises(NotFound):
            await store.remove_alias("@example.test")
        assert (await store.resolve_recipient("nobody@example.test")).status == "unknown"
        assert [a.source for a in await store.list_aliases()] == [
            "away@example.test",
            "postmaster@example.test",
            "team@example.test",
        ]
        team = await store.get_alias("TEAM@example.test")
        assert team is not None
        assert team.targets == ("demo@example.test", "other@example.test")
        assert await store.get_alias("@example.test") is None
        # RFC 5321 4.5.1: the domain's first account got postmaster; bare "postmaster" means the same
        postmaster = await store.get_alias("postmaster@example.test")
        assert postmaster is not None
        assert postmaster.targets == ("demo@example.test",)
        assert (await store.resolve_recipient("Postmaster")).account_ids == [demo]
        await store.remove_domain("other.example")
        with pytest.raises(NotFound):
            await store.remove_domain("other.example")
        assert [d.name for d in await store.list_domains()] == ["example.test"]

    backend.run(scenario)


@covers(S.add_account, S.set_password, S.remove_account, S.list_mailboxes)
def test_an_account_gets_default_mailboxes_a_new_password_and_goes_with_its_mail(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        (demo,) = await accounts(store, "demo")
        boxes = await store.list_mailboxes(demo)
        assert [(b.name, b.special_use) for b in boxes] == sorted(
            DEFAULT_MAILBOXES, key=lambda m: (m[0] != "INBOX", m[0])
        )
        assert all(b.uidnext == 1 and b.messages == 0 and b.subscribed for b in boxes)
        assert len({b.uidvalidity for b in boxes}) == len(boxes)
        await store.set_password("Demo@example.test", "new hash")
        account = await store.get_account("demo@example.test")
        assert account is not None
        assert account.password_hash == "new hash"
        with pytest.raises(NotFound):
            await store.set_password("nobody@example.test", "x")
        await deliver(store, message(), [demo])
        await store.remove_account("demo@example.test")
        assert await store.get_account("demo@example.test") is None
        assert await store.list_mailboxes(demo) == []
        assert (await store.resolve_recipient("demo@example.test")).status == "unknown"
        with pytest.raises(NotFound):
            await store.remove_account("demo@example.test")
        await store.remove_alias("postmaster@example.test")
        await store.remove_domain("example.test")  # nothing uses it any more

    backend.run(scenario)


@covers(S.resolve_recipient, S.invalidate_caches)
def test_directory_changes_through_another_store_object_apply_to_the_next_lookup(backend: Backend) -> None:
    """The CLI adds an account or an alias while the server runs: the server's next lookup sees it."""

    async def scenario(server: MailStore) -> None:
        (demo,) = await accounts(server, "demo")
        assert (await server.resolve_recipient("new@example.test")).status == "unknown"
        cli = backend.open()
        try:
            new = await cli.add_account("new@example.test", "hash")
            assert (await server.resolve_recipient("new@example.test")).account_ids == [new.id]
            await cli.add_alias("list@example.test", ["demo@example.test", "new@example.test"])
            assert (await server.resolve_recipient("list@example.test")).account_ids == [demo, new.id]
            await cli.remove_alias("list@example.test")
            assert (await server.resolve_recipient("list@example.test")).status == "unknown"
            await cli.add_domain("later.example")
            assert (await server.resolve_recipient("x@later.example")).status == "unknown"  # served now
        finally:
            await cli.close()
        server.invalidate_caches()  # SIGHUP: dropped caches are rebuilt from the store, answers stay
        assert (await server.resolve_recipient("new@example.test")).account_ids == [new.id]
        assert (await server.resolve_recipient("x@elsewhere.example")).status == "foreign"

    backend.run(scenario)


@covers(S.update_account, S.add_account)
def test_the_admin_role_and_the_disabled_state_are_kept_and_disabling_ends_web_sessions(
    backend: Backend,
) -> None:
    from postoffice.store import WebSession

    async def scenario(store: MailStore) -> None:
        await store.add_domain("example.test")
        first = await store.add_account("first@example.test", "h", admin=True)
        demo = await store.add_account("demo@example.test", "h")
        assert (first.admin, first.disabled, demo.admin, demo.disabled) == (True, False, False, False)
        await store.web_session_create(WebSession("s" * 64, demo.id, "c", 1.0, 1.0, 9e9))
        changed = await store.update_account("DEMO@example.test", admin=True)
        assert (changed.admin, changed.disabled) == (True, False)
        assert await store.web_session_get("s" * 64, 2.0, 9e9) is not None  # a role change keeps sessions
        changed = await store.update_account("demo@example.test", disabled=True)
        assert (changed.admin, changed.disabled) == (True, True)
        assert await store.get_account("demo@example.test") == changed
        assert await store.web_session_get("s" * 64, 2.0, 9e9) is None  # disabling ended it
        again = await store.update_account("demo@example.test", admin=False, disabled=False)
        assert (again.admin, again.disabled) == (False, False)
        assert await store.update_account("demo@example.test") == again  # nothing asked: nothing changed
        with pytest.raises(NotFound):
            await store.update_account("nobody@example.test", admin=True)

    backend.run(scenario)


@covers(S.update_domain, S.list_domains)
def test_plus_addressing_can_be_turned_off_per_domain(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        demo, other = await accounts(store, "demo", "other")
        await store.add_domain("second.test")
        await store.add_alias("@example.test", ["demo@example.test"])
        assert (await store.resolve_recipient("other+tag@example.test")).account_ids == [other]
        off = await store.update_domain("Example.Test", plus_addressing=False)
        assert (off.name, off.plus_addressing) == ("example.test", False)
        assert [(d.name, d.plus_addressing) for d in await store.list_domains()] == [
            ("example.test", False),
            ("second.test", True),
        ]
        # off: the tagged address is just another address (here the catch-all's)
        assert (await store.resolve_recipient("other+tag@example.test")).account_ids == [demo]
        await store.remove_alias("@example.test")
        assert (await store.resolve_recipient("other+tag@example.test")).status == "unknown"
        assert (await store.resolve_recipient("other@example.test")).account_ids == [other]
        assert (await store.update_domain("example.test", plus_addressing=True)).plus_addressing
        assert (await store.resolve_recipient("other+tag@example.test")).account_ids == [other]
        assert await store.update_domain("example.test") == off.__class__(off.id, "example.test", True)
        with pytest.raises(NotFound):
            await store.update_domain("unknown.test", plus_addressing=False)

    backend.run(scenario)
