"""All of an account's mail as one download, streamed: a ZIP archive holding one mbox (mboxrd) per folder,
or a Maildir tree (one file per message in FOLDER/cur/, with its flags in the file name); and an mbox upload
appended to a folder.

Implementation notes
- Streaming: the ZIP is written to a sink that the caller drains after every message, so memory is one
  message (and the compressor's window), whatever the mailbox holds. `zipfile` writes to an unseekable
  stream with data descriptors; entries are ZIP64 where they may pass 4 GiB (an mbox of a large folder).
- Deflate at level 1: mail compresses to about a third at little CPU; each chunk is compressed on the event
  loop (64 KiB at a time, well under a millisecond).
- Import appends in batches of IMPORT_BATCH messages, each batch one `append_many` transaction (durable when
  it returns); reading and MIME parsing run in a worker thread, off the event loop. A message over the size
  limit is skipped and counted, never cut.
"""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO

from postoffice.message import parse_message
from postoffice.store import MailStore
from postoffice.store.api import AppendItem
from postoffice.transfer.mbox import (
    MboxMessage,
    mailbox_path_parts,
    maildir_filename,
    read_mbox,
    write_mbox_message,
)

#: Messages appended in one transaction by an import.
IMPORT_BATCH = 100


class _Sink(io.RawIOBase):
    """What `zipfile` writes to; drained by the generator after each message."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.data += b
        return len(b)

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out


async def export_archive(store: MailStore, account_id: int, form: str) -> AsyncIterator[bytes]:
    """The account's mail as a ZIP: `form` "mbox" (FOLDER.mbox per folder) or "maildir" (FOLDER/cur/...)."""
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
    try:
        for mailbox in await store.list_mailboxes(account_id):
            folder = "/".join(mailbox_path_parts(mailbox.name))
            messages = await store.list_messages(mailbox.id)
            if form == "mbox":
                with archive.open(f"{folder}.mbox", "w", force_zip64=True) as entry:
                    for message in messages:
                        await write_mbox_message(store, message, entry)
                        yield sink.take()
                continue
            for sub in ("cur/", "new/", "tmp/"):
                archive.writestr(f"{folder}/{sub}", b"")
            for message in messages:
                info = zipfile.ZipInfo(
                    f"{folder}/cur/{maildir_filename(message, mailbox.uidvalidity)}",
                    time.gmtime(max(message.internaldate, 315532800))[:6],  # ZIP dates start in 1980
                )
                info.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(info, "w") as entry:
                    async for chunk in store.open_content(message.content_id):
                        entry.write(chunk)
                yield sink.take()
        archive.close()
        yield sink.take()
    finally:
        archive.close()


@dataclass
class ImportResult:
    imported: int = 0
    skipped: int = 0  # over the size limit


def _batches(fp: IO[bytes], max_message: int) -> Iterator[list[MboxMessage | int]]:
    batch: list[MboxMessage | int] = []
    for item in read_mbox(fp, max_message):
        batch.append(item)
        if len(batch) >= IMPORT_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def import_mbox(store: MailStore, mailbox_id: int, fp: IO[bytes], max_message: int) -> ImportResult:
    """Append every message of the mbox `fp` to the mailbox, with the flags and date the mbox carries."""
    result = ImportResult()
    batches = _batches(fp, max_message)

    def next_batch() -> list[AppendItem] | None:
        batch = next(batches, None)
        if batch is None:
            return None
        items = []
        for item in batch:
            if isinstance(item, int):
                result.skipped += 1
                continue
            parsed = parse_message(io.BytesIO(item.data))
            items.append(AppendItem(io.BytesIO(item.data), parsed, item.flags, item.internaldate))
        return items

    while (items := await asyncio.to_thread(next_batch)) is not None:
        if items:
            await store.append_many(mailbox_id, items)
            result.imported += len(items)
    return result
