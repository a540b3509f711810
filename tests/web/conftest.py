"""Fixtures of the web tests: a real server (every listener on an ephemeral loopback port, http and https
included) started once per module, with accounts demo, other and third."""

from __future__ import annotations

import asyncio
import imaplib
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.store import open_store
from tests.integration.harness import DataDir, ServerProcess, make_data_dir


def set_settings(data: DataDir, section: str, **values: object) -> None:
    """Set `key = value` lines of `[section]` in the data directory's config."""
    text = data.config.read_text()
    start = text.index(f"\n[{section}]\n")
    end = text.find("\n[", start + 1)
    end = len(text) if end < 0 else end
    body = text[start:end]
    for key, value in values.items():
        rendered = str(value).lower() if isinstance(value, bool) else repr(value).replace("'", '"')
        body, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {rendered}", body, count=1)
        if count != 1:
            raise AssertionError(f"no {key} in [{section}]")
    data.config.write_text(text[:start] + body + text[end:])


def grant_admin(data: DataDir, address: str) -> None:
    """Give the account the admin role in the (stopped) server's store."""

    async def grant() -> None:
        store = open_store(data.root / "store" / "mail.sqlite3")
        try:
            await store.update_account(address, admin=True)
        finally:
            await store.close()

    asyncio.run(grant())


def imap_login(data: DataDir, process: ServerProcess, address: str, password: str) -> bool:
    """Whether a real IMAP client (imaplib over TLS) logs in with this password."""
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    with imaplib.IMAP4_SSL("localhost", process.port("imaps"), ssl_context=context, timeout=30) as imap:
        try:
            imap.login(address, password)
        except imaplib.IMAP4.error:
            return False
        return True


def start_web_server(root: Path, **auth: object) -> tuple[DataDir, ServerProcess]:
    data = make_data_dir(root / "data", users=("demo", "other", "third"))
    set_settings(data, "auth", failure_delay=0.0, **auth)
    return data, ServerProcess(data).start()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataDir, ServerProcess]]:
    data, server = start_web_server(tmp_path_factory.mktemp("web"))
    try:
        yield data, server
    finally:
        server.stop()
