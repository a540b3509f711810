"""Roundcube beside Postoffice's webmail: the requests of bench/web_load.py against both, in one invocation,
so that a claim about the two is a ratio from one run.

The same mailbox twice: bench/web_load.py's `fill` fills Postoffice's store (imap_load's `make_message` with
`conversations=True`, seed 42, the vocabulary first, 70 % \\Seen: messages n with n % 10 < 7), and the same
messages in the same order are written as a Maildir (as bench/dovecot_compare.py writes one: LF line ends,
S= and W= sizes in the names, the directories' mtime in the past) for Dovecot, whose minimal configuration is
dovecot_compare's own (`write_config`: IMAP on 127.0.0.1, a passwd-file with a {PLAIN} password, so that no
password hash is run at an IMAP login). Roundcube (Debian's package, unmodified) runs in Apache with mod_php
(prefork, keep-alive, PHP's opcache as Debian ships it) from a minimal httpd configuration in the temporary
directory (AllowOverride None: Roundcube's .htaccess holds no PHP settings, only Options), listening on
127.0.0.1 over plain HTTP (no TLS; Postoffice is measured over HTTPS), with its own configuration directory
(ROUNDCUBE_CONFIG_DIR: the package's defaults.inc.php, and a config.inc.php naming Dovecot as imap_host, a
SQLite database and temp/log directories in the temporary directory, no plugins, everything else Roundcube's
defaults: no IMAP or message cache, 50 messages a page, list mode, arrival order).
Postoffice is `postoffice run` (tests.integration.harness) as in web_load.

Each item is timed at the client: the wall time of each HTTP request on one keep-alive connection per server,
p50 and p95 over --requests requests, after one untimed warm-up request per item and server (Roundcube's
first list makes Dovecot build its index of the Maildir: its time is printed). The items alternate between
the two servers, both running throughout:

- login to the list data: Postoffice POST /login (303) and the Inbox page it redirects to; Roundcube the login
  form's POST with its request token (302), the mail page it redirects to, and the list request the page's
  script makes (`_action=list&_remote=1` with the X-Roundcube-Request token header). Postoffice keeps a
  password it verified in memory (verified_cache_ttl): once with the cache off (argon2id at every login, as a
  first login does; a server started with verified_cache_ttl = 0) and once with it on (repeated logins;
  Roundcube has no such cache: its row repeats its one measurement);
- the message list, first page: Postoffice's Inbox page (conversations) and its single-message view (the
  `view=flat` cookie); Roundcube's list request in its default list mode, in thread mode (switched once with
  `_threads=1`, as its menu does) and the request of a click on the date column (`_sort=date_DESC`);
- opening a message: Postoffice /box/ID/UID; Roundcube `_action=show&_uid=UID` (both mark it read);
- a search for a rare word in bodies (imap_load.RARE_WORD) and for a sender: Postoffice /search?q=...&in=ID
  (`from:` for the sender); Roundcube `_action=search` with `_headers=body` and `_headers=from` (Dovecot
  without a full-text index: IMAP SEARCH BODY / FROM).

Server CPU is that of each process tree (Postoffice; Apache with its PHP children; Dovecot), from
/proc/PID/stat, per item; the load generator's own CPU is reported too.

Installs nothing. Needs root and Debian's packages (bookworm: Roundcube 1.6, Dovecot 2.3, Apache 2.4,
PHP 8.2):

    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
        dovecot-imapd apache2 libapache2-mod-php roundcube-core roundcube-sqlite3

(the packages' own services and configurations are not used, so `roundcube-core/dbconfig-install` may be
false: this script makes its own SQLite database). Everything binds to 127.0.0.1 and is bounded by timeouts;
the temporary directory is removed at the end (unless --keep).

    .venv/bin/python bench/roundcube_compare.py [--messages 100000] [--requests 40] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import FrameType
from urllib.parse import quote, urlencode, urljoin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.integration.harness import DataDir, ServerProcess, make_data_dir

import dovecot_compare
import imap_load
import web_load
from imap_load import RARE_WORD, make_message, sender, vocabulary

ROUNDCUBE_ROOT = Path("/var/lib/roundcube")  # INSTALL_PATH of Debian's roundcube-core
ROUNDCUBE_DEFAULTS = Path("/etc/roundcube/defaults.inc.php")
ROUNDCUBE_MIMETYPES = Path("/etc/roundcube/mimetypes.php")
ROUNDCUBE_SCHEMA = Path("/usr/share/roundcube/SQL/sqlite.initial.sql")
APACHE_MODULES = Path("/usr/lib/apache2/modules")
WEB_USER = "www-data"
START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 600.0  # one HTTP request (a body search of 100,000 Maildir files is slow)
PACKAGES = "dovecot-imapd apache2 libapache2-mod-php roundcube-core roundcube-sqlite3"


def missing(what: str) -> None:
    sys.exit(
        f"{what} is not installed; as root:\n  DEBIAN_FRONTEND=noninteractive apt-get install -y "
        f"--no-install-recommends {PACKAGES}"
    )


def package_versions() -> str:
    done = subprocess.run(
        [
            shutil.which("dpkg-query") or "/usr/bin/dpkg-query",
            "-W",
            "-f",
            "${Package} ${Version}\\n",
            *PACKAGES.split(),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return ", ".join(done.stdout.split("\n")[:-1]).replace(", ", "; ")


# ------------------------------------------------------------------------------------------ the mailbox


def write_maildir(maildir: Path, messages: int, size: int) -> int:
    """web_load.fill's messages (imap_load's with conversations, in its order and with its \\Seen pattern) as
    Dovecot stores them, named as dovecot_compare.write_maildir names them; the total bytes (with CRLF)."""
    rng = random.Random(42)  # as web_load.fill: the vocabulary first, then the messages in order
    words = vocabulary(rng, 2000)
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    base = int(time.time()) - 3600 - messages  # the order of these times is the order of the UIDs
    total = 0
    for n in range(messages):
        raw = make_message(rng, words, n, size, conversations=True)
        total += len(raw)
        data = raw.replace(b"\r\n", b"\n")
        flags = "S" if n % 10 < 7 else ""  # as imap_load.deliver_mailbox: (start + i) % 10 < 7
        stamp = base + n
        virtual_size = len(data) + data.count(b"\n")
        name = f"{stamp}.M{n:06d}P{os.getpid()}.bench,S={len(data)},W={virtual_size}:2,{flags}"
        path = maildir / "cur" / name
        path.write_bytes(data)
        os.utime(path, (stamp, stamp))
    for sub in ("cur", "new", "tmp"):  # a directory changed in the last seconds is rescanned at every sync
        os.utime(maildir / sub, (base + messages - 1, base + messages - 1))
    return total


# ---------------------------------------------------------------------------------- processes and CPU


@dataclass
class Daemon:
    """A foreground master process (Dovecot, Apache) and its children."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def cpu_seconds(self) -> float:
        ticks = sum(ticks for _, ticks in dovecot_compare.process_tree(self.proc.pid).values())
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        children = {pid: command for pid, (command, _) in dovecot_compare.process_tree(self.proc.pid).items()}
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(30)
        dovecot_compare.kill_leftovers(children, self.proc.pid)
        return code

    def errors(self, pattern: str) -> list[str]:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if re.search(pattern, line)]


def wait_for_port(daemon: Daemon, port: int, greeting: bytes | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"{daemon.name} exited {daemon.proc.returncode}:\n{log_tail(daemon.log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                if greeting is None or sock.recv(200).startswith(greeting):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{daemon.name} not ready on port {port}:\n{log_tail(daemon.log)}")
        time.sleep(0.1)


def log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


def start_dovecot(root: Path, home: Path, port: int) -> Daemon:
    binary = dovecot_compare.dovecot_binary()
    conf = dovecot_compare.write_config(root, home, "maildir", {"imap": port, "imaps": 0}, tls=False)
    out = (root / "dovecot-stdout.log").open("wb")
    proc = subprocess.Popen(
        [binary, "-F", "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        start_new_session=True,  # its own process group: Apache's master signals its whole group at exit
    )
    out.close()
    daemon = Daemon("dovecot", proc, root / "dovecot.log")
    try:
        wait_for_port(daemon, port, b"* OK")
    except BaseException:
        daemon.stop()
        raise
    return daemon


def write_roundcube_config(root: Path, imap_port: int) -> Path:
    """Roundcube's configuration directory: the package's defaults, and our config.inc.php."""
    web = pwd.getpwnam(WEB_USER)
    rc = root / "roundcube"
    for sub in ("config", "temp", "logs", "db"):
        (rc / sub).mkdir(parents=True)
    (rc / "config" / "defaults.inc.php").symlink_to(ROUNDCUBE_DEFAULTS)
    (rc / "config" / "mimetypes.php").symlink_to(ROUNDCUBE_MIMETYPES)
    database = rc / "db" / "roundcube.db"
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.executescript(ROUNDCUBE_SCHEMA.read_text())
    des_key = secrets.token_hex(12)
    (rc / "config" / "config.inc.php").write_text(
        f"""<?php
// written by bench/roundcube_compare.py; everything not named here is Roundcube's default
$config = [];
$config['db_dsnw'] = 'sqlite:///{database}?mode=0640';
$config['imap_host'] = '127.0.0.1:{imap_port}';
$config['smtp_host'] = '127.0.0.1:9';  // not used: nothing is sent
$config['support_url'] = '';
$config['product_name'] = 'Roundcube Webmail';
$config['des_key'] = '{des_key}';
$config['plugins'] = [];
$config['skin'] = 'elastic';
$config['enable_spellcheck'] = false;
$config['enable_installer'] = false;
$config['temp_dir'] = '{rc / "temp"}/';
$config['log_dir'] = '{rc / "logs"}/';
""",
        encoding="utf-8",
    )
    for path in (rc / "temp", rc / "logs", rc / "db", database):
        os.chown(path, web.pw_uid, web.pw_gid)
    return rc


def start_apache(root: Path, port: int, roundcube: Path) -> Daemon:
    binary = shutil.which("apache2") or "/usr/sbin/apache2"
    apache = root / "apache"
    (apache / "run").mkdir(parents=True)
    conf = apache / "httpd.conf"
    conf.write_text(
        f"""# written by bench/roundcube_compare.py: Roundcube only, on 127.0.0.1, plain HTTP
ServerRoot {apache}
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {apache / "run" / "httpd.pid"}
DefaultRuntimeDir {apache / "run"}
Mutex file:{apache / "run"} default
ErrorLog {apache / "error.log"}
LogLevel warn
User {WEB_USER}
Group {WEB_USER}
LoadModule mpm_prefork_module {APACHE_MODULES / "mod_mpm_prefork.so"}
LoadModule authz_core_module {APACHE_MODULES / "mod_authz_core.so"}
LoadModule dir_module {APACHE_MODULES / "mod_dir.so"}
LoadModule mime_module {APACHE_MODULES / "mod_mime.so"}
LoadModule php_module {php_module()}
StartServers 2
MinSpareServers 2
MaxSpareServers 4
MaxRequestWorkers 16
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 600
Timeout {REQUEST_TIMEOUT:.0f}
TypesConfig /etc/mime.types
DocumentRoot {ROUNDCUBE_ROOT / "public_html"}
DirectoryIndex index.php
<Directory />
  AllowOverride None
  Require all denied
</Directory>
<Directory {ROUNDCUBE_ROOT / "public_html"}>
  Options FollowSymLinks
  AllowOverride None
  Require all granted
</Directory>
<FilesMatch "\\.php$">
  SetHandler application/x-httpd-php
</FilesMatch>
""",
        encoding="utf-8",
    )
    env = dict(os.environ, ROUNDCUBE_CONFIG_DIR=str(roundcube / "config"))
    out = (apache / "stdout.log").open("wb")
    proc = subprocess.Popen(
        [binary, "-f", str(conf), "-DFOREGROUND"],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        env=env,
        start_new_session=True,  # the prefork master sends SIGTERM to its whole process group when it stops
    )
    out.close()
    daemon = Daemon("apache2", proc, apache / "error.log")
    try:
        wait_for_port(daemon, port, None)
    except BaseException:
        print(log_tail(apache / "stdout.log"), file=sys.stderr)
        daemon.stop()
        raise
    return daemon


def php_module() -> Path:
    found = sorted(APACHE_MODULES.glob("libphp*.so"))
    if not found:
        missing("libapache2-mod-php")
    return found[-1]


# ------------------------------------------------------------------------------------------- the client


class Session:
    """One browser session on one keep-alive connection: a cookie jar and per-request wall times."""

    def __init__(self, port: int, context: ssl.SSLContext | None) -> None:
        if context is None:
            self.conn: http.client.HTTPConnection = http.client.HTTPConnection(
                "127.0.0.1", port, timeout=REQUEST_TIMEOUT
            )
        else:
            self.conn = http.client.HTTPSConnection(
                "localhost", port, context=context, timeout=REQUEST_TIMEOUT
            )
        self.cookies: dict[str, str] = {}
        self.reconnects = 0

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, bytes, float]:
        """(status, Location, body, wall seconds)."""
        all_headers = {"User-Agent": "bench/roundcube_compare.py", **(headers or {})}
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=all_headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # the server closed the idle keep-alive connection (while the other server was measured):
                # once more on a new connection (the warm-up request of an item is the one that meets this)
                self.conn.close()
                self.reconnects += 1
                if attempt == 2:
                    raise
        elapsed = time.perf_counter() - started
        for value in response.headers.get_all("set-cookie") or []:
            self.take_cookie(value)
        return response.status, response.headers.get("location", ""), data, elapsed

    def take_cookie(self, header: str) -> None:
        pair, *attributes = header.split(";")
        name, _, value = pair.strip().partition("=")
        gone = value in ("", "-del-", "deleted")
        for attribute in attributes:
            key, _, arg = attribute.strip().partition("=")
            if key.lower() == "max-age" and arg.strip().lstrip("-").isdigit() and int(arg) <= 0:
                gone = True
            elif key.lower() == "expires":
                with contextlib.suppress(TypeError, ValueError):
                    gone = gone or parsedate_to_datetime(arg).timestamp() < time.time()
        if gone:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value

    def follow(self, status: int, location: str, base: str) -> tuple[int, bytes, float]:
        """Follow redirects as a browser does (GET); (final status, body, wall seconds of the requests)."""
        spent = 0.0
        body = b""
        for _ in range(5):
            if status not in (301, 302, 303, 307):
                return status, body, spent
            path = urljoin(base, location)
            base = path
            status, location, body, elapsed = self.request("GET", path)
            spent += elapsed
        raise RuntimeError(f"too many redirects, at {base}")

    def close(self) -> None:
        self.conn.close()


class Postoffice:
    """Postoffice's webmail, as web_load's Browser drives it."""

    name = "Postoffice"

    def __init__(self, port: int, cafile: Path) -> None:
        self.session = Session(port, ssl.create_default_context(cafile=str(cafile)))
        self.box = ""

    def login(self) -> float:
        """A fresh session: the login form (untimed), then the timed POST and the Inbox page."""
        self.session.cookies.clear()
        status, _, page, _ = self.session.request("GET", "/login")
        match = re.search(rb'name="login_token" value="([^"]+)"', page)
        if status != 200 or match is None:
            raise RuntimeError(f"Postoffice: no login form ({status})")
        form = urlencode(
            {"login_token": match.group(1).decode(), "username": web_load.USER, "password": web_load.PASSWORD}
        )
        status, location, _, spent = self.session.request(
            "POST", "/login", form.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        )
        if status != 303:
            raise RuntimeError(f"Postoffice login: {status}")
        status, page, followed = self.session.follow(status, location, "/login")
        if status != 200 or b"message-row" not in page:
            raise RuntimeError(f"Postoffice login: the Inbox page was {status}")
        self.box = location
        return spent + followed

    def get(self, path: str, expect: bytes | None = None) -> float:
        status, _, page, spent = self.session.request("GET", path)
        if status != 200 or (expect is not None and expect not in page):
            raise RuntimeError(f"Postoffice {path}: {status}, expected {expect!r} in\n{page[:500]!r}")
        return spent


class Roundcube:
    """Roundcube's requests as its Elastic skin's script makes them (X-Roundcube-Request token, _remote=1)."""

    name = "Roundcube"

    def __init__(self, port: int) -> None:
        self.session = Session(port, None)
        self.token = ""

    def login(self) -> float:
        """A fresh session: the login form (untimed); then the timed POST, the mail page it redirects to and
        the list request the page's script makes."""
        self.session.cookies.clear()
        status, _, page, _ = self.session.request("GET", "/?_task=login")
        match = re.search(rb'name="_token" value="([^"]+)"', page)
        if status != 200 or match is None:
            raise RuntimeError(f"Roundcube: no login form ({status}):\n{page[:800]!r}")
        form = urlencode(
            {
                "_token": match.group(1).decode(),
                "_task": "login",
                "_action": "login",
                "_timezone": "UTC",
                "_url": "",
                "_user": imap_load.USER,
                "_pass": imap_load.PASSWORD,
            }
        )
        status, location, page, spent = self.session.request(
            "POST", "/?_task=login", form.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        )
        if status != 302:
            raise RuntimeError(f"Roundcube login: {status} (not a redirect):\n{page[-1500:]!r}")
        status, page, followed = self.session.follow(status, location, "/?_task=login")
        token = re.search(rb'"request_token":"([^"]+)"', page)
        if status != 200 or token is None:
            raise RuntimeError(f"Roundcube login: the mail page was {status}:\n{page[:800]!r}")
        self.token = token.group(1).decode()
        return spent + followed + self.list_page()

    def ajax(self, query: dict[str, str], expect: bytes | None) -> float:
        path = "/?" + urlencode({**query, "_remote": "1"})
        headers = {"X-Roundcube-Request": self.token, "X-Requested-With": "XMLHttpRequest"}
        status, _, page, spent = self.session.request("GET", path, headers=headers)
        if status != 200 or (expect is not None and expect not in page):
            raise RuntimeError(f"Roundcube {path}: {status}, expected {expect!r} in\n{page[:800]!r}")
        return spent

    def list_page(self, expect: bytes = b"add_message_row", **extra: str) -> float:
        query = {"_task": "mail", "_action": "list", "_mbox": "INBOX", "_page": "1", **extra}
        return self.ajax(query, expect)

    def show(self, uid: int) -> float:
        path = "/?" + urlencode({"_task": "mail", "_action": "show", "_uid": str(uid), "_mbox": "INBOX"})
        status, _, page, spent = self.session.request("GET", path)
        if status != 200 or b"messagebody" not in page:
            raise RuntimeError(f"Roundcube {path}: {status}:\n{page[:800]!r}")
        return spent

    def search(self, text: str, headers: str, expect: bytes) -> float:
        query = {
            "_task": "mail",
            "_action": "search",
            "_q": text,
            "_headers": headers,
            "_filter": "ALL",
            "_scope": "base",
            "_interval": "",
            "_mbox": "INBOX",
        }
        return self.ajax(query, expect)


# --------------------------------------------------------------------------------------- measurement


@dataclass
class Result:
    label: str
    times: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # seconds over the timed requests, per server side


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def timed(
    result: Result,
    side: str,
    cpu: Callable[[], float],
    calls: list[Callable[[], float]],
    warmup: Callable[[], float] | None = None,
) -> None:
    (warmup or calls[0])()
    before = cpu()
    result.times[side] = [call() * 1000 for call in calls]
    result.cpu[side] = cpu() - before


def ms(values: list[float] | None, q: float) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values) if q == 0.5 else percentile(values, q):.1f}"


def ratio(a: list[float] | None, b: list[float] | None, q: float) -> str:
    if not a or not b:
        return "—"
    x = statistics.median(a) if q == 0.5 else percentile(a, q)
    y = statistics.median(b) if q == 0.5 else percentile(b, q)
    return f"{y / x:.2f}"


def print_header() -> None:
    print(
        "\n| request | Postoffice p50 ms | p95 ms | Roundcube p50 ms | p95 ms | ratio RC/PO p50 | ratio p95 "
        "| n | PO CPU ms/req | RC CPU ms/req (Apache+PHP / Dovecot) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")


def print_rows(results: list[Result]) -> None:
    for r in results:
        po, rc = r.times.get("po"), r.times.get("rc")
        n = max(len(po or []), len(rc or []))
        po_cpu = f"{r.cpu['po'] * 1000 / len(po):.1f}" if po else "—"
        rc_cpu = (
            f"{(r.cpu['apache'] + r.cpu['dovecot']) * 1000 / len(rc):.1f} "
            f"({r.cpu['apache'] * 1000 / len(rc):.1f} / {r.cpu['dovecot'] * 1000 / len(rc):.1f})"
            if rc
            else "—"
        )
        print(
            f"| {r.label} | {ms(po, 0.5)} | {ms(po, 0.95)} | {ms(rc, 0.5)} | {ms(rc, 0.95)} "
            f"| {ratio(po, rc, 0.5)} | {ratio(po, rc, 0.95)} | {n} | {po_cpu} | {rc_cpu} |",
            flush=True,
        )


def tree_cpu(pid: int) -> float:
    return sum(t for _, t in dovecot_compare.process_tree(pid).values()) / os.sysconf("SC_CLK_TCK")


def set_verified_cache_ttl(data: DataDir, seconds: float) -> None:
    text, count = re.subn(
        r"(?m)^verified_cache_ttl = .*$", f"verified_cache_ttl = {seconds:g}", data.config.read_text()
    )
    if count != 1:
        raise RuntimeError("no verified_cache_ttl in Postoffice's configuration")
    data.config.write_text(text)


def start_postoffice(data: DataDir) -> tuple[ServerProcess, Postoffice]:
    server = ServerProcess(data).start()
    if server.proc is None:
        raise RuntimeError("Postoffice did not start")
    return server, Postoffice(server.port("https"), data.root / "tls" / "cert.pem")


def run(args: argparse.Namespace, root: Path, cleanup: list[Callable[[], None]]) -> None:
    n = args.requests
    root.chmod(0o755)  # the mail processes (nobody) and Apache's children reach their files through it
    # ---- the two mailboxes
    home = root / "home"
    started = time.perf_counter()
    total = write_maildir(home / "Maildir", args.messages, args.size)
    account = pwd.getpwnam(dovecot_compare.MAIL_USER)
    dovecot_compare.chown_tree(home, account.pw_uid, account.pw_gid)
    print(
        f"wrote {args.messages:,} messages as a Maildir ({total / 2**20:.1f} MiB with CRLF) in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    data: DataDir = make_data_dir(root / "data", users=())
    print(f"filling Postoffice with {args.messages:,} messages of {args.size} B ...", flush=True)
    took = asyncio.run(web_load.fill(data.root / "store" / "mail.sqlite3", args.messages, args.size))
    print(f"filled in {took:.0f} s", flush=True)

    # ---- Dovecot, Apache with Roundcube
    imap_port, http_port = dovecot_compare.free_ports(2)
    dovecot = start_dovecot(root, home, imap_port)
    cleanup.append(lambda: print(f"dovecot exit: {dovecot.stop()}"))
    roundcube_dir = write_roundcube_config(root, imap_port)
    apache = start_apache(root, http_port, roundcube_dir)
    cleanup.append(lambda: print(f"apache2 exit: {apache.stop()}"))
    print(f"Roundcube: http://127.0.0.1:{http_port}/ (plain HTTP), Dovecot IMAP 127.0.0.1:{imap_port}")
    print(f"packages: {package_versions()}")
    print(f"{os.cpu_count()} CPUs; {n} timed requests per item and server, after one warm-up request each")

    rc = Roundcube(http_port)
    started = time.perf_counter()
    rc.login()
    print(
        f"Roundcube warm-up: the first login and list (Dovecot indexes the Maildir) took "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )

    def rc_cpu() -> float:
        return apache.cpu_seconds() + dovecot.cpu_seconds()

    def both(
        result: Result,
        po_calls: list[Callable[[], float]],
        rc_calls: list[Callable[[], float]],
        warmups: tuple[Callable[[], float], Callable[[], float]] | None = None,
    ) -> None:
        if po_calls:
            timed(result, "po", lambda: tree_cpu(po_pid), po_calls, warmups[0] if warmups else None)
        if rc_calls:
            apache_before, dovecot_before = apache.cpu_seconds(), dovecot.cpu_seconds()
            timed(result, "rc", rc_cpu, rc_calls, warmups[1] if warmups else None)
            result.cpu["apache"] = apache.cpu_seconds() - apache_before
            result.cpu["dovecot"] = dovecot.cpu_seconds() - dovecot_before
        results.append(result)
        print_rows(results[-1:])

    results: list[Result] = []
    generator_cpu = time.process_time()
    postoffice_cpu = 0.0
    apache_cpu, dovecot_cpu = apache.cpu_seconds(), dovecot.cpu_seconds()
    print_header()

    # ---- logins with every password verified: Postoffice with verified_cache_ttl = 0
    set_verified_cache_ttl(data, 0)
    server, po = start_postoffice(data)
    po_pid = server.proc.pid if server.proc else 0
    postoffice_cpu -= tree_cpu(po_pid)
    try:
        both(
            Result("login → list data, password verified (PO argon2id; RC: Dovecot {PLAIN})"),
            [po.login] * n,
            [rc.login] * n,
        )
        postoffice_cpu += tree_cpu(po_pid)
    finally:
        po.session.close()
        server.stop()

    # ---- everything else with Postoffice's defaults (verified_cache_ttl = 300)
    set_verified_cache_ttl(data, 300)
    server, po = start_postoffice(data)
    po_pid = server.proc.pid if server.proc else 0
    postoffice_cpu -= tree_cpu(po_pid)
    try:
        first = po.login() * 1000
        print(f"Postoffice: the first login on the restarted server (argon2id, cache empty): {first:.1f} ms")
        both(Result("login → list data, repeated (PO verified-password cache)"), [po.login] * n, [])
        results[-1].times["rc"] = results[0].times["rc"]  # Roundcube has no such cache: the same item
        results[-1].cpu.update({k: v for k, v in results[0].cpu.items() if k != "po"})
        box = po.box
        folder = box.rsplit("/", 1)[1]
        both(
            Result("message list, first page (PO conversations; RC list mode)"),
            [lambda: po.get(box, b"message-row")] * n,
            [rc.list_page] * n,
        )
        po.session.cookies["view"] = "flat"
        both(
            Result("message list, first page (PO single messages; RC list mode)"),
            [lambda: po.get(box, b"message-row")] * n,
            [rc.list_page] * n,
        )
        del po.session.cookies["view"]
        # the list-options menu's switch, once (saved in the preferences)
        rc.list_page(b'"threading":true', _threads="1")
        both(
            Result("message list in threads (PO conversations; RC thread mode)"),
            [lambda: po.get(box, b"message-row")] * n,
            [rc.list_page] * n,
        )
        rc.list_page(_threads="0")
        both(
            Result("click on the date column (RC _sort=date_DESC; PO has newest first only)"),
            [],
            [lambda: rc.list_page(_sort="date_DESC")] * n,
        )
        rc.list_page(_sort="_DESC")  # back to arrival order, Roundcube's default
        warm, *uids = random.Random(3).sample(range(1, args.messages + 1), n + 1)

        def po_open(uid: int) -> Callable[[], float]:
            return lambda: po.get(f"{box}/{uid}", b"reader-subject")

        def rc_open(uid: int) -> Callable[[], float]:
            return lambda: rc.show(uid)

        both(
            Result("open a message (PO /box/ID/UID; RC _action=show)"),
            [po_open(u) for u in uids],
            [rc_open(u) for u in uids],
            (po_open(warm), rc_open(warm)),
        )
        rare = f'"messagecount":{sum(1 for k in range(args.messages) if k % 1500 == 777)},'.encode()
        both(
            Result(f"search a body word ({RARE_WORD}; RC _headers=body)"),
            [lambda: po.get(f"/search?q={RARE_WORD}&in={folder}")] * n,
            [lambda: rc.search(RARE_WORD, "body", rare)] * n,
        )
        who = sender(42)[1]
        by_sender = f'"messagecount":{sum(1 for k in range(args.messages) if k % 200 == 42)},'.encode()
        both(
            Result(f"search a sender (PO from:{who}; RC _headers=from)"),
            [lambda: po.get(f"/search?q={quote('from:' + who)}&in={folder}")] * n,
            [lambda: rc.search(who, "from", by_sender)] * n,
        )
        postoffice_cpu += tree_cpu(po_pid)
    finally:
        po.session.close()
        code = server.stop()
        print(f"postoffice exit: {code}")
    generator = time.process_time() - generator_cpu
    rc.session.close()
    print(
        f"connections reopened after the server closed an idle one: Postoffice {po.session.reconnects}, "
        f"Roundcube {rc.session.reconnects}"
    )
    print(f"\nall items, {args.messages:,} messages (ratio = Roundcube / Postoffice; < 1: Roundcube faster):")
    print_header()
    print_rows(results)
    print(
        f"\nCPU over the measurements: Postoffice {postoffice_cpu:.1f} s (both server processes: the "
        f"first with verified_cache_ttl = 0); Apache+PHP {apache.cpu_seconds() - apache_cpu:.1f} s, Dovecot "
        f"{dovecot.cpu_seconds() - dovecot_cpu:.1f} s (after Roundcube's warm-up); load generator "
        f"{generator:.1f} s"
    )
    print(
        "notes: client wall time per request on one keep-alive connection per server; Postoffice over HTTPS, "
        "Roundcube over plain HTTP; Dovecot's passdb is {PLAIN} (no hash at Roundcube's IMAP logins); "
        "Roundcube opens one IMAP connection per HTTP request (no imap_cache/messages_cache, its default)"
    )
    for daemon, pattern in ((dovecot, r"Error:|Fatal:|Panic:"), (apache, r"\[(error|crit|alert|emerg)|PHP")):
        errors = daemon.errors(pattern)
        if errors:
            print(f"{daemon.name} log: {len(errors)} errors, the last ones:\n" + "\n".join(errors[-5:]))
    rc_errors = roundcube_dir / "logs" / "errors.log"
    if rc_errors.exists() and rc_errors.stat().st_size:
        print(f"Roundcube errors.log:\n{log_tail(rc_errors)[-1500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=4096, help="approximate message size in octets")
    parser.add_argument("--requests", type=int, default=40, help="timed requests per item and server")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--timeout", type=float, default=3 * 3600.0, help="for the whole run, in seconds")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: Dovecot's and Apache's masters need root (their workers: nobody, www-data)")
    dovecot_compare.dovecot_binary()
    if not (shutil.which("apache2") or Path("/usr/sbin/apache2").exists()):
        missing("apache2")
    php_module()
    if not (ROUNDCUBE_ROOT / "public_html" / "index.php").exists() or not ROUNDCUBE_DEFAULTS.exists():
        missing("roundcube-core")
    if not list(Path("/etc/php").glob("*/mods-available/pdo_sqlite.ini")):
        missing("roundcube-sqlite3 (php-sqlite3)")

    def out_of_time(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"the run took longer than --timeout {args.timeout:.0f} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(args.timeout))
    root = Path(tempfile.mkdtemp(prefix="postoffice-roundcube-bench-"))
    cleanup: list[Callable[[], None]] = []
    try:
        run(args, root, cleanup)
    finally:
        signal.alarm(0)
        for step in reversed(cleanup):
            with contextlib.suppress(Exception):
                step()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
