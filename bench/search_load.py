"""IMAP SEARCH at the store level: a mailbox of N 4 KiB messages delivered through the store API, then
`MailStore.search` timed for the criteria the IMAP layer makes of FROM, SUBJECT, BODY, TEXT, a flag and an OR.

Messages are distinct: 200 senders, subjects and bodies of words drawn from a 2,000-word vocabulary (seeded,
so runs compare), half of them \\Seen. Each search runs `--repeat` times; the median and the best are printed
with the number of matches.

    .venv/bin/python bench/search_load.py [--messages 10000] [--size 4096] [--repeat 15]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from postoffice.message import parse_message
from postoffice.store import And, Criteria, HasFlag, Or, Text, open_store

SYLLABLES = ["ka", "lo", "mi", "ra", "tu", "ne", "so", "vi", "de", "pa", "zo", "gu", "ri", "fe", "bo"]


def vocabulary(rng: random.Random, n: int) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def make_message(rng: random.Random, words: list[str], n: int, size: int) -> bytes:
    sender = f"sender{n % 200}"
    subject = " ".join(rng.choice(words) for _ in range(5))
    head = (
        f"From: {sender.title()} <{sender}@remote.test>\r\nTo: demo@example.test\r\n"
        f"Subject: {subject}\r\nDate: Mon, 2 Jan 2023 10:00:00 +0000\r\nMessage-ID: <{n}@bench>\r\n\r\n"
    )
    body: list[str] = []
    length = len(head)
    while length < size - 80:
        line = " ".join(rng.choice(words) for _ in range(10)) + "\r\n"
        body.append(line)
        length += len(line)
    return (head + "".join(body)).encode()


async def fill(store_path: Path, messages: int, size: int) -> tuple[int, list[str]]:
    rng = random.Random(42)
    words = vocabulary(rng, 2000)
    store = open_store(store_path)
    try:
        await store.add_domain("example.test")
        account = await store.add_account("demo@example.test", "hash")
        inbox = await store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        started = time.perf_counter()
        for start in range(0, messages, 64):
            batch = [make_message(rng, words, n, size) for n in range(start, min(start + 64, messages))]
            await asyncio.gather(
                *(
                    store.deliver(
                        io.BytesIO(raw),
                        parse_message(io.BytesIO(raw)),
                        [account.id],
                        flags=("\\Seen",) if (start + i) % 2 else (),
                    )
                    for i, raw in enumerate(batch)
                )
            )
        print(f"delivered {messages} messages in {time.perf_counter() - started:.1f} s", flush=True)
        return inbox.id, words
    finally:
        await store.close()


async def measure(store_path: Path, mailbox_id: int, words: list[str], repeat: int) -> None:
    rare, common = words[7], words[1234]
    searches: list[tuple[str, Criteria]] = [
        ("FROM sender42", Text(("header", "from"), "sender42")),
        (f"SUBJECT {common}", Text(("header", "subject"), common)),
        (f"BODY {rare}", Text("body", rare)),
        (f"TEXT {rare}", Text("text", rare)),
        ("TEXT xyzzy (no match)", Text("text", "xyzzy")),
        ("BODY ka (2 chars: scan)", Text("body", "ka")),
        ("BODY grüße (non-ASCII: scan)", Text("body", "grüße")),
        ("UNSEEN", HasFlag("\\Seen", False)),
        (
            f"OR FROM sender42 SUBJECT {common}",
            Or(Text(("header", "from"), "sender42"), Text(("header", "subject"), common)),
        ),
        (f"UNSEEN TEXT {rare}", And((HasFlag("\\Seen", False), Text("text", rare)))),
    ]
    store = open_store(store_path)
    try:
        print("| search | matches | median ms | best ms |\n|---|---|---|---|")
        for label, criteria in searches:
            times = []
            found: list[int] = []
            for _ in range(repeat):
                started = time.perf_counter()
                found = await store.search(mailbox_id, criteria)
                times.append((time.perf_counter() - started) * 1000)
            print(
                f"| {label} | {len(found)} | {statistics.median(times):.1f} | {min(times):.1f} |", flush=True
            )
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mail.sqlite3"
        mailbox_id, words = asyncio.run(fill(path, args.messages, args.size))
        asyncio.run(measure(path, mailbox_id, words, args.repeat))


if __name__ == "__main__":
    main()
