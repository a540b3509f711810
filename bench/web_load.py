"""Webmail load: one account whose INBOX holds N messages (default 100,000), then the requests a person's
browser makes, timed at the server (the Server-Timing header: the time until the response head, which for
these pages is the whole work) and at the client, p50 and p95:

- the first page of the message list (50 newest conversations, rendered on the server: the messages come
  in conversations of four), a page about 500 pages down and the page above it; single messages, the first
  page and page 1,000;
- opening a message (its page; the server marks it read);
- a search for a word in bodies, and for a sender (`from:`), in the INBOX, through the store's index;
- the same with 50 concurrent web sessions (keep-alive HTTPS connections, each logged in) while SMTP
  delivery into the same INBOX runs (8 clients), reporting requests/s, latencies and delivered msg/s;
- memory per open live-update stream: server RSS before and after opening `--streams` streams.

The store is filled through the store API before the server starts (bench/imap_load.py's messages: realistic
headers, multipart/alternative and attachments among them). Everything runs on 127.0.0.1 in a temporary
directory; the server is `postoffice run` on ephemeral ports. The load generator's own CPU is reported.

    .venv/bin/python bench/web_load.py [--messages 100000] [--requests 200] [--sessions 50] [--seconds 10]
                                       [--streams 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import random
import re
import resource
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.integration.harness import DataDir, ServerProcess, make_data_dir

from imap_load import RARE_WORD, deliver_mailbox, make_message, sender, vocabulary
from postoffice.directory.passwords import hash_password
from postoffice.store import open_store

USER = "bench@example.test"
PASSWORD = "bench-web-pw"


async def fill(store_path: Path, messages: int, size: int) -> float:
    rng = random.Random(42)
    words = vocabulary(rng, 2000)
    store = open_store(store_path)
    started = time.perf_counter()
    try:
        account = await store.add_account(USER, hash_password(PASSWORD))

        def progress(done: int) -> None:
            if done % 10_240 == 0:
                print(f"  filled {done:,}", flush=True)

        await deliver_mailbox(
            store,
            account.id,
            rng,
            words,
            messages,
            size,
            batch_size=128,
            progress=progress,
            conversations=True,
        )
    finally:
        await store.close()
    return time.perf_counter() - started


class Browser:
    """One logged-in web session on one keep-alive HTTPS connection."""

    def __init__(self, port: int, cafile: Path) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.conn = http.client.HTTPSConnection("localhost", port, context=self.context, timeout=120)
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes, float, float]:
        all_headers = dict(headers or {})
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        started = time.perf_counter()
        self.conn.request(method, path, body=body, headers=all_headers)
        response = self.conn.getresponse()
        data = response.read()
        client_ms = (time.perf_counter() - started) * 1000
        for value in response.headers.get_all("set-cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        timing = re.search(r"app;dur=([\d.]+)", response.headers.get("server-timing", ""))
        server_ms = float(timing.group(1)) if timing else float("nan")
        return response.status, response.headers, data, server_ms, client_ms

    def login(self) -> str:
        _, _, page, _, _ = self.request("GET", "/login")
        match = re.search(rb'name="login_token" value="([^"]+)"', page)
        assert match is not None, "no login form"
        token = match.group(1).decode()
        form = urlencode({"login_token": token, "username": USER, "password": PASSWORD}).encode()
        status, headers, _, _, _ = self.request(
            "POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert status == 303, status
        status, headers, _, _, _ = self.request("GET", "/")
        return str(headers["location"])


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered):7.2f} ms  p95 {p95:7.2f} ms"


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(browser: Browser, label: str, paths: list[str]) -> None:
    server, client = [], []
    for path in paths:
        status, _, _, s_ms, c_ms = browser.request("GET", path)
        assert status == 200, (path, status)
        server.append(s_ms)
        client.append(c_ms)
    print(f"{label:<44} server {summary(server)}   client {summary(client)}   ({len(paths)} requests)")


def smtp_load(port: int, stop: threading.Event, counter: list[int]) -> None:
    rng = random.Random(7)
    words = vocabulary(rng, 500)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        reader = sock.makefile("rb")

        def reply() -> int:
            while True:
                line = reader.readline()
                if line[3:4] != b"-":
                    return int(line[:3])

        reply()
        sock.sendall(b"EHLO bench.test\r\n")
        reply()
        n = 0
        while not stop.is_set():
            raw = make_message(rng, words, 1_000_000 + n, 4096).replace(b"\r\n.", b"\r\n..")
            sock.sendall(f"MAIL FROM:<load@remote.test>\r\nRCPT TO:<{USER}>\r\nDATA\r\n".encode())
            assert [reply() for _ in range(3)] == [250, 250, 354]
            sock.sendall(raw + b"\r\n.\r\n")
            assert reply() == 250
            counter[0] += 1
            n += 1


def concurrent(
    port: int, cafile: Path, sessions: int, seconds: float, box: str, smtp_port: int, pid: int
) -> None:
    browsers = [Browser(port, cafile) for _ in range(sessions)]
    for b in browsers:
        b.login()
    stop = threading.Event()
    delivered = [0]
    smtp_threads = [threading.Thread(target=smtp_load, args=(smtp_port, stop, delivered)) for _ in range(8)]
    results: list[tuple[float, float]] = []
    lock = threading.Lock()

    def run(browser: Browser, k: int) -> None:
        rng = random.Random(k)
        while not stop.is_set():
            path = rng.choice(
                [
                    box,
                    box,
                    f"{box}?page={rng.randint(2, 50)}",
                    f"/search?q={RARE_WORD}&in={box.rsplit('/', 1)[1]}",
                ]
            )
            status, _, _, s_ms, c_ms = browser.request("GET", path)
            assert status == 200, (path, status)
            with lock:
                results.append((s_ms, c_ms))

    web_threads = [threading.Thread(target=run, args=(b, k)) for k, b in enumerate(browsers)]
    started = time.perf_counter()
    generator_cpu = time.process_time()
    for t in smtp_threads + web_threads:
        t.start()
    server_cpu = cpu_of(pid)
    time.sleep(seconds)
    stop.set()
    server_share = (cpu_of(pid) - server_cpu) / seconds * 100
    for t in smtp_threads + web_threads:
        t.join(120)
    elapsed = time.perf_counter() - started
    rate = len(results) / elapsed
    print(
        f"{sessions} web sessions + 8 SMTP clients for {elapsed:.1f} s: {rate:,.0f} web requests/s, "
        f"{delivered[0] / elapsed:,.0f} msg/s delivered"
    )
    at_server, at_client = summary([s for s, _ in results]), summary([c for _, c in results])
    print(f"  web requests: server {at_server}   client {at_client}")
    generator = (time.process_time() - generator_cpu) / elapsed * 100
    print(f"  server {server_share:.0f} % of a core; load generator (web and SMTP clients) {generator:.0f} %")


def streams(port: int, cafile: Path, count: int, pid: int) -> None:
    browser = Browser(port, cafile)
    browser.login()
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    context = ssl.create_default_context(cafile=str(cafile))
    before = rss_of(pid)
    opened = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port), timeout=60)
        conn = context.wrap_socket(raw, server_hostname="localhost")
        conn.sendall(f"GET /events HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\n\r\n".encode())
        head = b""
        while b"retry:" not in head:
            head += conn.recv(4096)
        opened.append(conn)
    time.sleep(1)  # settle (RSS is read once, not used for synchronisation)
    after = rss_of(pid)
    print(
        f"{count} live-update streams open: server RSS +{(after - before) / 1024 / 1024:.1f} MiB, "
        f"{(after - before) / count / 1024:.1f} KiB per stream (TLS included)"
    )
    for conn in opened:
        conn.close()


def in_browser(port: int, runs: int) -> None:
    """End to end in Debian's Chromium (tests/web/browser.py): from the login form's submit to the first row
    of the Inbox drawn, and from a click on a message to its text drawn."""
    from playwright.sync_api import sync_playwright
    from tests.web.browser import launch

    login_ms, open_ms = [], []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            for n in range(runs):
                context = browser.new_context(ignore_https_errors=True)
                page = context.new_page()
                page.goto(f"https://localhost:{port}/login")
                page.fill("#username", USER)
                page.fill("#password", PASSWORD)
                started = time.perf_counter()
                page.click("button[type=submit]")
                page.locator(".message-row").first.wait_for()
                login_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                page.locator(".message-row a").nth(n % 50).click()
                page.locator(".reader-subject").wait_for()
                open_ms.append((time.perf_counter() - started) * 1000)
                context.close()
        finally:
            browser.close()
    print(f"{'in Chromium: login submitted -> first row drawn':<44} {summary(login_ms)}   ({runs} runs)")
    print(f"{'in Chromium: click a message -> its text drawn':<44} {summary(open_ms)}   ({runs} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--browser-runs", type=int, default=20, help="0: no Chromium timings")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    root = Path(tempfile.mkdtemp(prefix="web-load-"))
    data: DataDir = make_data_dir(root / "data", users=())
    text = data.config.read_text()
    text = re.sub(r"(?m)^max_connections_per_ip = \d+", "max_connections_per_ip = 5000", text)
    text = re.sub(r"(?m)^max_connections = \d+", "max_connections = 5000", text)
    data.config.write_text(text)
    print(f"filling {args.messages:,} messages of {args.size} B ...", flush=True)
    took = asyncio.run(fill(data.root / "store" / "mail.sqlite3", args.messages, args.size))
    print(f"filled in {took:.0f} s")
    server = ServerProcess(data).start()
    try:
        if server.proc is None:
            raise RuntimeError("the server did not start")
        pid = server.proc.pid
        cafile = data.root / "tls" / "cert.pem"
        port = server.port("https")
        browser = Browser(port, cafile)
        box = browser.login()
        folder = box.rsplit("/", 1)[1]
        for _ in range(5):
            browser.request("GET", box)  # warm-up
        generator_cpu = time.process_time()
        server_cpu = cpu_of(pid)
        measure(browser, f"conversations, first page ({args.messages:,})", [box] * args.requests)
        deep = max(1, args.messages - 4 * 50 * 499)  # about page 500 of conversations of four
        measure(
            browser, "conversations, ~page 500 (?before=)", [f"{box}?before={deep}"] * (args.requests // 4)
        )
        back = [f"{box}?after={deep}"] * (args.requests // 4)
        measure(browser, "conversations, the page above (?after=)", back)
        browser.cookies["view"] = "flat"
        measure(browser, "single messages, first page", [box] * (args.requests // 4))
        measure(browser, "single messages, page 1,000", [f"{box}?page=1000"] * (args.requests // 4))
        del browser.cookies["view"]
        uids = random.Random(3).sample(range(1, args.messages + 1), args.requests)
        measure(browser, "open a message", [f"{box}/{uid}" for uid in uids])
        measure(
            browser,
            f"search a body word ({RARE_WORD})",
            [f"/search?q={RARE_WORD}&in={folder}"] * (args.requests // 4),
        )
        measure(
            browser,
            "search a common body word",
            [f"/search?q={quote('kalo')}&in={folder}"] * (args.requests // 4),
        )
        who = sender(42)[1]
        measure(
            browser,
            "search a sender (from:)",
            [f"/search?q={quote('from:' + who)}&in={folder}"] * (args.requests // 4),
        )
        generator = time.process_time() - generator_cpu
        print(f"  server CPU {cpu_of(pid) - server_cpu:.1f} s, load generator CPU {generator:.1f} s")
        if args.browser_runs:
            in_browser(port, args.browser_runs)
        concurrent(port, cafile, args.sessions, args.seconds, box, server.port("smtp"), pid)
        streams(port, cafile, args.streams, pid)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
