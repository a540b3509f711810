"""The durability contract: a 250 means on disk. kill -9, disk full (runs everywhere: a tmpfs in a user
namespace, no root needed), and a 50 MB message with bounded memory."""

from __future__ import annotations

import base64
import hashlib
import imaplib
import json
import poplib
import random
import re
import shutil
import smtplib
import socket
import ssl
import string
import threading
from pathlib import Path

import pytest

from tests.integration.harness import POSTOFFICE, DataDir, ServerProcess, make_data_dir
from tests.integration.mailcheck import body_after_trace, inbox_messages, integrity_ok
from tests.support.small_disk import SmallDisk, small_disk

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def message(tag: str, size: int = 2048) -> bytes:
    head = (
        f"From: s@remote.test\r\nTo: demo@example.test\r\nSubject: {tag}\r\n"
        f"Message-ID: <{tag}@remote.test>\r\n\r\n"
    )
    line = (tag + " ").encode() * 8 + b"\r\n"
    body = (line * (size // len(line) + 1))[:size]
    return head.encode() + body.rstrip(b"\r\n") + b"\r\n"


def test_kill_9_under_load_loses_no_acknowledged_message_and_reuses_no_uid(data_dir: DataDir) -> None:
    """8 concurrent senders; the server is killed with SIGKILL mid-load; everything that got a 250 is stored
    byte-exact exactly once per recipient after restart, the store opens without repair, UIDs are not
    reused."""
    proc = ServerProcess(data_dir).start()
    port = proc.port()
    acknowledged: list[tuple[str, bytes]] = []  # (tag, raw) of messages that got 250, both recipients
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    def sender(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                    while not stop.is_set():
                        tag = f"s{n}-m{i}"
                        raw = message(tag)
                        i += 1
                        smtp.sendmail("s@remote.test", ["demo@example.test", "other@example.test"], raw)
                        with lock:
                            acknowledged.append((tag, raw))
                            if len(acknowledged) >= 200:
                                enough.set()
            except (smtplib.SMTPException, OSError):
                return  # the server died under us: whatever did not get a 250 is not promised

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    assert enough.wait(120), "the load did not get going"
    assert proc.proc is not None
    proc.proc.kill()  # SIGKILL, in the middle of the load
    proc.proc.wait(30)
    stop.set()
    for t in threads:
        t.join(60)
    proc.kill()

    with lock:
        promised = dict(acknowledged)
    assert len(promised) >= 200
    assert integrity_ok(data_dir.root)

    for address in ("demo@example.test", "other@example.test"):
        stored = inbox_messages(data_dir.root, address)
        uids = [uid for uid, _ in stored]
        assert uids == sorted(set(uids))
        by_tag: dict[str, list[bytes]] = {}
        for _, raw in stored:
            body = body_after_trace(raw)
            tag = body.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
            by_tag.setdefault(tag, []).append(body)
        for tag, raw in promised.items():
            assert by_tag.get(tag) == [raw], f"{address}: {tag} missing, duplicated or changed"
        # anything else stored was sent but not acknowledged (the kill came between commit and 250): allowed
        # once
        assert all(len(v) == 1 for v in by_tag.values())

    before_max = max(uid for uid, _ in inbox_messages(data_dir.root, "demo@example.test"))
    restarted = ServerProcess(data_dir).start()
    try:
        with smtplib.SMTP("127.0.0.1", restarted.port()) as smtp:
            smtp.sendmail("s@remote.test", ["demo@example.test"], message("after-restart"))
    finally:
        assert restarted.stop() == 0
    last_uid, last = inbox_messages(data_dir.root, "demo@example.test")[-1]
    assert last_uid == before_max + 1 or last_uid > before_max
    assert body_after_trace(last) == message("after-restart")
    assert integrity_ok(data_dir.root)


def _reset_peak_rss(pid: int) -> None:
    """Start VmHWM afresh (Linux >= 4.0): an earlier peak (argon2 takes 64 MiB at login) must not count."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_a_50_mb_message_streams_into_the_store_with_bounded_memory(
    server: ServerProcess, data_dir: DataDir
) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    # warm up (imports, first connection) so that the baseline includes the steady state
    with smtplib.SMTP("127.0.0.1", server.port()) as smtp:
        smtp.sendmail("s@remote.test", ["other@example.test"], message("warm-up"))
    _reset_peak_rss(pid)
    baseline = _rss_kib(pid, "VmRSS")

    expected = send_generated_message(server.port(), 50 * 1000 * 1000)
    peak_growth_mib = (_rss_kib(pid, "VmHWM") - baseline) / 1024
    assert peak_growth_mib < 40, f"server memory grew by {peak_growth_mib:.1f} MiB for a 50 MB message"
    ((_, stored),) = inbox_messages(data_dir.root, "demo@example.test")
    assert len(body_after_trace(stored)) == len(expected)
    assert body_after_trace(stored) == expected


def send_generated_message(port: int, size: int) -> bytes:
    """Send a plain-text message of about `size` octets over a raw SMTP connection, block by block, so the
    test itself never holds it whole; returns the expected message bytes."""
    head = b"From: s@remote.test\r\nTo: demo@example.test\r\nSubject: big\r\nContent-Type: text/plain\r\n\r\n"
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
    count = (size - len(head)) // len(line)
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    f = sock.makefile("rb")

    def reply() -> int:
        while True:
            text = f.readline()
            if text[3:4] != b"-":
                return int(text[:3])

    assert reply() == 220
    sock.sendall(b"EHLO big.test\r\n")
    assert reply() == 250
    sock.sendall(b"MAIL FROM:<s@remote.test> SIZE=%d\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n" % size)
    assert [reply(), reply(), reply()] == [250, 250, 354]
    sock.sendall(head)
    block = line * 1000
    for _ in range(count // 1000):
        sock.sendall(block)
    sock.sendall(line * (count % 1000))
    sock.sendall(b".\r\n")
    assert reply() == 250
    sock.sendall(b"QUIT\r\n")
    assert reply() == 221
    sock.close()
    return head + line * count


def test_a_50_mb_message_is_retrieved_over_pop3s_with_bounded_memory(data_dir: DataDir) -> None:
    first = ServerProcess(data_dir).start()
    try:
        expected = send_generated_message(first.port(), 50 * 1000 * 1000)
    finally:
        assert first.stop() == 0
    server = ServerProcess(data_dir).start()  # a fresh process: its peak is the retrieval's
    try:
        assert server.proc is not None
        context = ssl.create_default_context(cafile=str(data_dir.root / "tls" / "cert.pem"))
        raw = socket.create_connection(("127.0.0.1", server.port("pop3s")), timeout=120)
        sock = context.wrap_socket(raw, server_hostname="localhost")
        f = sock.makefile("rb")
        assert f.readline().startswith(b"+OK")
        sock.sendall(b"USER demo@example.test\r\nPASS demo-secret-pw\r\nSTAT\r\n")
        assert f.readline().startswith(b"+OK")
        assert f.readline().startswith(b"+OK")
        assert f.readline().startswith(b"+OK 1 ")
        _reset_peak_rss(server.proc.pid)
        baseline = _rss_kib(server.proc.pid, "VmRSS")
        sock.sendall(b"RETR 1\r\n")
        assert f.readline().startswith(b"+OK")
        digest = hashlib.sha256()
        received = 0
        while True:
            line = f.readline()
            if line == b".\r\n":
                break
            if line.startswith(b"."):
                line = line[1:]
            received += len(line)
            digest.update(line)
        sock.sendall(b"QUIT\r\n")
        assert f.readline().startswith(b"+OK")
        sock.close()
        peak_growth_mib = (_rss_kib(server.proc.pid, "VmHWM") - baseline) / 1024
    finally:
        assert server.stop() == 0
    assert peak_growth_mib < 40, f"server memory grew by {peak_growth_mib:.1f} MiB to send a 50 MB message"
    ((_, stored),) = inbox_messages(data_dir.root, "demo@example.test")
    assert received == len(stored)
    assert digest.digest() == hashlib.sha256(stored).digest()
    assert body_after_trace(stored) == expected


# -- a full disk (docs/decisions/0030) -----------------------------------------------------------------------
# The store and the spool live on a small tmpfs of their own (tests/support/small_disk.py: no root needed);
# the config, the certificate and the server's log stay outside, so that only mail takes the space.

MIB = 1024 * 1024


def set_option(text: str, section: str, key: str, value: str) -> str:
    """`key = value` in `[section]` of the config `postoffice init` wrote (it names every key)."""
    pattern = re.compile(rf"(?ms)^(\[{re.escape(section)}\]\n.*?^){re.escape(key)} = [^\n]*$")
    text, count = pattern.subn(rf"\g<1>{key} = {value}", text, count=1)
    assert count == 1, f"no {key} in [{section}]"
    return text


def data_dir_on(disk: SmallDisk, root: Path, reserve: int = MIB) -> DataDir:
    """A data directory whose store and spool are on `disk`, with 1 MiB of minimum free space and of
    reserve (the defaults, 100 and 16 MiB, are for real disks)."""
    data = make_data_dir(root / "data", users=("demo", "other"))
    (disk.outside / "store").mkdir()
    (disk.outside / "spool").mkdir()
    shutil.copy2(data.root / "store" / "mail.sqlite3", disk.outside / "store" / "mail.sqlite3")
    text = data.config.read_text()
    text = set_option(text, "store", "path", json.dumps(str(disk.mount / "store" / "mail.sqlite3")))
    text = set_option(text, "store", "spool_dir", json.dumps(str(disk.mount / "spool")))
    text = set_option(text, "store", "min_free_space", str(MIB))
    text = set_option(text, "store", "disk_reserve", str(reserve))
    data.config.write_text(text)
    return data


def stored_copy(disk: SmallDisk, root: Path) -> Path:
    """A copy of the stopped server's store, for mailcheck (SQLite cannot open it inside the namespace)."""
    copy = root / "stored"
    (copy / "store").mkdir(parents=True)
    for name in ("mail.sqlite3", "mail.sqlite3-wal"):
        if (disk.outside / "store" / name).exists():
            shutil.copy2(disk.outside / "store" / name, copy / "store" / name)
    return copy


def send(port: int, raw: bytes, to: str = "demo@example.test") -> tuple[int, bytes] | None:
    """None when accepted, else the refusal (code, text), whether at MAIL or after the data."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        try:
            smtp.sendmail("s@remote.test", [to], raw)
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            text = exc.smtp_error  # bytes from smtplib; typeshed allows str
            return exc.smtp_code, text if isinstance(text, bytes) else text.encode()
    return None


def imap_login(data: DataDir, server: ServerProcess) -> imaplib.IMAP4_SSL:
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=context, timeout=60)
    imap.login("demo@example.test", "demo-secret-pw")
    return imap


def pop3_delete(data: DataDir, server: ServerProcess, numbers: list[int]) -> bytes:
    """DELE each of `numbers`, then QUIT; the QUIT reply (the UPDATE state's verdict)."""
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    pop = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=context, timeout=60)
    pop.user("demo@example.test")
    pop.pass_("demo-secret-pw")
    for number in numbers:
        assert pop.dele(number).startswith(b"+OK")
    return pop.quit()


def test_mail_filling_the_disk_gets_452_while_select_expunge_and_pop3_quit_still_work(tmp_path: Path) -> None:
    """The outside testers' case: deliveries fill the disk. They are refused (452 4.3.1) while the minimum
    free space is left; SELECT (which claims \\Recent, a write), STORE + EXPUNGE and POP3 DELE + QUIT work;
    the deleted mail's space takes new mail again; nothing acknowledged is lost."""
    with small_disk(tmp_path / "small", "24m") as disk:
        data = data_dir_on(disk, tmp_path)
        server = ServerProcess(data, wrapper=disk.wrapper).start()
        try:
            accepted: list[bytes] = []
            refusal = None
            for i in range(500):
                raw = message(f"fill-{i}", size=200_000)
                refusal = send(server.port(), raw)
                if refusal is not None:
                    break
                accepted.append(raw)
            assert refusal is not None, "the disk never filled up"
            assert refusal[0] == 452, refusal
            assert refusal[1].startswith(b"4.3.1"), refusal
            assert len(accepted) >= 10
            assert disk.free() >= MIB  # refused while the minimum free space was left

            imap = imap_login(data, server)
            typ, exists = imap.select("INBOX")
            assert typ == "OK"
            count = exists[0]
            assert count is not None
            assert int(count) == len(accepted)
            assert imap.response("RECENT")[1] == [str(len(accepted)).encode()]
            assert imap.store("1:3", "+FLAGS", "(\\Deleted)")[0] == "OK"
            typ, expunged = imap.expunge()
            assert typ == "OK"
            assert len(expunged) == 3
            imap.logout()

            assert pop3_delete(data, server, [1, 2]).startswith(b"+OK")

            again = [message(f"again-{i}", size=200_000) for i in range(3)]
            for raw in again:
                assert send(server.port(), raw) is None
        finally:
            assert server.stop() == 0, server.log()
        copy = stored_copy(disk, tmp_path)
    assert integrity_ok(copy)
    stored = [body_after_trace(raw) for _, raw in inbox_messages(copy, "demo@example.test")]
    assert stored == accepted[5:] + again


def test_a_disk_filled_by_another_program_keeps_deleting_working_on_the_reserve(tmp_path: Path) -> None:
    """Another program takes every free byte. New mail gets 452 4.3.1 at MAIL and the server goes on; the
    first write that finds no space (SELECT's \\Recent claim) releases the reserve, and on its space SELECT,
    EXPUNGE, POP3 QUIT and the CLI removing an account all work; new mail stays refused until space is
    back, then is stored. Nothing half-written is visible, nothing acknowledged is lost."""
    with small_disk(tmp_path / "small", "24m") as disk:
        data = data_dir_on(disk, tmp_path)
        server = ServerProcess(data, wrapper=disk.wrapper).start()
        try:
            accepted = [message(f"before-{i}", size=100_000) for i in range(4)]
            for raw in accepted:
                assert send(server.port(), raw) is None
            assert send(server.port(), message("for-other"), to="other@example.test") is None
            filler = disk.fill()
            with smtplib.SMTP("127.0.0.1", server.port(), timeout=60) as smtp:
                smtp.ehlo()
                code, text = smtp.mail("s@remote.test")
                assert code == 452, (code, text)
                assert text.startswith(b"4.3.1"), (code, text)
                assert smtp.noop()[0] == 250  # the session and the server go on

            imap = imap_login(data, server)
            typ, exists = imap.select("INBOX")
            assert typ == "OK"
            assert exists == [b"4"]
            assert imap.response("RECENT")[1] == [b"4"]  # the claim went through, on the reserve
            assert "bytes of the reserve" in server.log()  # released
            typ, answer = imap.append("INBOX", None, None, message("appended"))
            assert (typ, answer) == ("NO", [b"[OVERQUOTA] Not enough disk space"])
            assert imap.store("1:2", "+FLAGS", "(\\Deleted)")[0] == "OK"
            typ, expunged = imap.expunge()
            assert typ == "OK"
            assert len(expunged) == 2
            imap.logout()

            assert pop3_delete(data, server, [1]).startswith(b"+OK")

            removed = disk.run_inside(
                POSTOFFICE, "--config", str(data.config), "user", "remove", "other@example.test"
            )
            assert removed.returncode == 0, removed.stdout + removed.stderr

            assert send(server.port(), message("still-full")) == (
                452,
                b"4.3.1 Insufficient system storage, try again later",
            )
            filler.unlink()
            later = message("after-space-freed", size=100_000)
            assert send(server.port(), later) is None
        finally:
            assert server.stop() == 0, server.log()
        copy = stored_copy(disk, tmp_path)
    assert integrity_ok(copy)
    stored = [body_after_trace(raw) for _, raw in inbox_messages(copy, "demo@example.test")]
    assert stored == [accepted[3], later]
    assert inbox_messages(copy, "other@example.test") == []


def test_select_opens_the_mailbox_when_not_one_byte_can_be_written(tmp_path: Path) -> None:
    """No reserve and no free byte: SELECT cannot claim \\Recent, and opens the mailbox all the same; the new
    messages are not \\Recent to it and stay \\Recent for the next session that can claim them."""
    with small_disk(tmp_path / "small", "24m") as disk:
        data = data_dir_on(disk, tmp_path, reserve=0)
        server = ServerProcess(data, wrapper=disk.wrapper).start()
        try:
            for i in range(2):
                assert send(server.port(), message(f"new-{i}")) is None
            filler = disk.fill()
            imap = imap_login(data, server)
            typ, exists = imap.select("INBOX")
            assert typ == "OK"
            assert exists == [b"2"]
            assert imap.response("RECENT")[1] == [b"0"]
            assert imap.noop()[0] == "OK"
            imap.logout()
            assert "Recent not claimed" in server.log()
            filler.unlink()
            imap = imap_login(data, server)
            assert imap.select("INBOX")[0] == "OK"
            assert imap.response("RECENT")[1] == [b"2"]
            imap.logout()
        finally:
            assert server.stop() == 0, server.log()


def varied_message(tag: str, size: int = 200_000) -> bytes:
    """Text that is not one line repeated: its search index, and what deleting it writes, are realistic
    (decision 0030 measured 182 KB of WAL to expunge 200 KB of varied text)."""
    rng = random.Random(tag)
    head = (
        f"From: s@remote.test\r\nTo: demo@example.test\r\nSubject: {tag}\r\n"
        f"Message-ID: <{tag}@remote.test>\r\n\r\n"
    ).encode()
    lines = []
    total = 0
    while total < size:
        words = ("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(10))
        line = " ".join(words).encode() + b"\r\n"
        lines.append(line)
        total += len(line)
    return head + b"".join(lines)


def test_every_full_disk_event_leaves_deleting_working_and_freed_space_lets_mail_in(tmp_path: Path) -> None:
    """The outside tester's sequence: mail fills the disk to 452, then another program fills it to the last
    byte, three times over without freeing anything in between. After each event SELECT, STORE +/-FLAGS,
    UID EXPUNGE of one message, DELETE of an empty mailbox and POP3 DELE + QUIT work (before the fix only
    the first event did: the reserve was never made again). In the last event one EXPUNGE removes more
    than the reserve can take in one transaction. Then the filler goes, and mail is accepted again: a tiny
    message, and one of the size that filled the disk. Integrity holds and nothing acknowledged is lost."""
    with small_disk(tmp_path / "small", "30m") as disk:
        data = data_dir_on(disk, tmp_path, reserve=6 * MIB)
        server = ServerProcess(data, wrapper=disk.wrapper).start()
        try:
            imap = imap_login(data, server)
            for event in range(3):
                assert imap.create(f"Empty{event}")[0] == "OK"
            imap.logout()
            kept: list[bytes] = []  # what the store holds, in UID order
            refusal = None
            for i in range(500):
                raw = varied_message(f"fill-{i}")
                refusal = send(server.port(), raw)
                if refusal is not None:
                    break
                kept.append(raw)
            assert refusal is not None, refusal
            assert refusal[0] == 452, refusal
            assert len(kept) >= 10

            fillers = []
            for event in range(3):
                fillers.append(disk.fill(f"filler{event}"))
                assert disk.free() < 64 * 1024, f"event {event}: the disk is not full"

                imap = imap_login(data, server)
                typ, exists = imap.select("INBOX")
                assert (typ, exists) == ("OK", [str(len(kept)).encode()]), f"event {event}: SELECT"
                typ, found = imap.uid("SEARCH", "ALL")
                uids = found[0].split()
                assert len(uids) == len(kept)
                doomed = uids[-1].decode()
                assert imap.uid("STORE", doomed, "+FLAGS", "(\\Deleted)")[0] == "OK", f"event {event}"
                typ, answer = imap.uid("EXPUNGE", doomed)
                assert typ == "OK", f"event {event}: UID EXPUNGE {answer}"
                assert imap.response("EXPUNGE")[1] == [str(len(kept)).encode()]
                kept.pop()
                assert imap.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK", f"event {event}"
                assert imap.store("1", "-FLAGS", "(\\Deleted)")[0] == "OK", f"event {event}: STORE -FLAGS"
                assert imap.delete(f"Empty{event}")[0] == "OK", f"event {event}: DELETE"
                if event == 2:
                    # all but three: more than the reserve takes in one transaction (about 200 KB of WAL
                    # each), so removed in several, every one of them
                    many = len(kept) - 3
                    assert imap.store(f"2:{many + 1}", "+FLAGS", "(\\Deleted)")[0] == "OK"
                    typ, answer = imap.expunge()
                    assert typ == "OK", f"EXPUNGE of {many}: {answer}"
                    assert len(answer) == many
                    del kept[1 : many + 1]
                    assert "in one transaction: in steps" in server.log()
                imap.logout()

                quit_reply = pop3_delete(data, server, [1, 2])
                assert quit_reply.startswith(b"+OK"), f"event {event}: POP3 QUIT {quit_reply!r}"
                del kept[:2]
                assert "bytes of the reserve" in server.log()  # released

            for filler in fillers:
                filler.unlink()
            tiny = b"From: s@remote.test\r\nSubject: t\r\n\r\nhi\r\n"  # 30 bytes
            assert send(server.port(), tiny) is None
            kept.append(tiny)
            again = varied_message("again")
            assert send(server.port(), again) is None
            kept.append(again)
        finally:
            assert server.stop() == 0, server.log()
        copy = stored_copy(disk, tmp_path)
    assert integrity_ok(copy)
    stored = [body_after_trace(raw) for _, raw in inbox_messages(copy, "demo@example.test")]
    assert stored == kept


def test_an_expunge_stopped_by_the_disk_reports_what_it_removed_before_no(tmp_path: Path) -> None:
    """On a full disk an EXPUNGE goes in steps; one message whose removal alone needs more than the disk
    and the reserve give stops it. The messages removed before it are reported (untagged EXPUNGE, RFC 9051
    7.5.1) ahead of the NO [OVERQUOTA], and the one left keeps \\Deleted for a later EXPUNGE."""
    with small_disk(tmp_path / "small", "24m") as disk:
        data = data_dir_on(disk, tmp_path, reserve=256 * 1024)
        server = ServerProcess(data, wrapper=disk.wrapper).start()
        try:
            for i in range(3):
                assert send(server.port(), message(f"small-{i}")) is None
            # random Latin-1 letters: about as many distinct trigrams as characters, so removing it from
            # the search index writes megabytes
            rng = random.Random(0)
            noise = bytes(rng.randrange(0xC0, 0x100) for _ in range(512 * 1024))
            big = (
                b"From: s@remote.test\r\nTo: demo@example.test\r\nSubject: noise\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                + base64.encodebytes(noise).replace(b"\n", b"\r\n")
            )
            assert send(server.port(), big) is None
            imap = imap_login(data, server)
            assert imap.select("INBOX") == ("OK", [b"4"])
            assert imap.store("1:4", "+FLAGS", "(\\Deleted)")[0] == "OK"
            disk.fill()
            typ, answer = imap.expunge()
            assert (typ, answer) == ("NO", [b"[OVERQUOTA] Not enough disk space"])
            left_after = [1, 2, 3, 4]  # the sequence numbers, as the EXPUNGE responses shift them
            for number in imap.response("EXPUNGE")[1]:
                assert number is not None, "no EXPUNGE response before the NO"
                del left_after[int(number) - 1]
            assert left_after == [4]
            typ, left = imap.fetch("1:*", "(FLAGS)")
            assert typ == "OK"
            assert len(left) == 1
            flags = left[0]
            assert isinstance(flags, bytes)
            assert b"\\Deleted" in flags
            imap.logout()
        finally:
            assert server.stop() == 0, server.log()
        copy = stored_copy(disk, tmp_path)
    assert integrity_ok(copy)
    assert [body_after_trace(raw) for _, raw in inbox_messages(copy, "demo@example.test")] == [big]
