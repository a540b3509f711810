"""The store depends only on `message` and `directory` (docs/decisions/0036): no protocol package is
imported by the store or the message packages, statically or while storing a message (the ENVELOPE and
BODYSTRUCTURE kept at delivery are rendered by `message.imap_forms`, not by `imap.fetch`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import postoffice

SRC = Path(postoffice.__file__).parent
#: What the store and the message parser may import from postoffice (besides themselves).
ALLOWED = {
    # postoffice.settings: the declaration helpers of store/settings.py (imports nothing of postoffice)
    "store": {
        "postoffice.store",
        "postoffice.message",
        "postoffice.directory",
        "postoffice.plural",
        "postoffice.settings",
    },
    "message": {"postoffice.message"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.startswith("postoffice.") or name == "postoffice"}


def test_store_and_message_modules_import_no_protocol_package() -> None:
    for package, allowed in ALLOWED.items():
        for path in sorted((SRC / package).rglob("*.py")):
            for name in _imports(path):
                assert any(name == a or name.startswith(a + ".") for a in allowed), (path, name)


SCRIPT = """
import asyncio, io, sys
from postoffice.message import parse_message
from postoffice.store import open_store

RAW = b"From: a@example.org\\r\\nTo: d@example.test\\r\\nSubject: x\\r\\n\\r\\nbody\\r\\n"

async def main(path):
    store = open_store(path)
    try:
        await store.add_domain("example.test")
        account = await store.add_account("d@example.test", "hash")
        (copy,) = await store.deliver(io.BytesIO(RAW), parse_message(io.BytesIO(RAW)), [account.id])
        (message,) = await store.list_messages(copy.mailbox_id)
        assert (await store.imap_renderings([message.content_id]))[message.content_id].envelope
    finally:
        await store.close()

asyncio.run(main(sys.argv[1]))
PROTOCOLS = ("imap", "smtp", "pop3", "pop2", "net", "auth")
loaded = sorted(m for m in sys.modules if m.split(".")[:2][-1] in PROTOCOLS)
print(" ".join(loaded))
"""


def test_storing_a_message_loads_no_protocol_package(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "mail.sqlite3")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
