"""A scripted "remote" SMTP server on loopback, standing in for the internet's mail servers in tests.

It speaks enough ESMTP (RFC 5321, STARTTLS RFC 3207, SIZE, 8BITMIME, SMTPUTF8, PIPELINING) for a real client
to deliver to it, records every accepted message, and can misbehave on demand: answer a chosen command with a
4xx or 5xx reply, drop the connection at a chosen point, or stall until released. Binds any loopback address
(127.0.0.2, 127.0.0.3, ...: Linux routes the whole 127/8 to lo) so several "hosts" can listen on port 25 at
once, or an ephemeral port.
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass, field


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    data: bytes
    tls: bool
    helo: str
    mail_params: str = ""  # what followed the address in MAIL FROM (e.g. "SIZE=100 REQUIRETLS")


@dataclass
class Script:
    """What to do. `replies` maps a stage ("connect", "ehlo", "mail", "rcpt", "data", "dot") to a reply line
    that replaces the normal one (e.g. "451 4.3.0 try later"); "drop" as the reply closes the connection at
    that stage; "stall" waits until `release` is set, then answers normally."""

    replies: dict[str, str] = field(default_factory=dict)
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # per recipient address
    extensions: tuple[str, ...] = (
        "PIPELINING",
        "SIZE 10485760",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    )
    starttls: bool = True
    hostname: str = "peer.test"


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def setup(self) -> None:
        super().setup()
        server = self.server
        assert isinstance(server, _Server)
        self.peer = server.peer
        self.tls = False

    def _send(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def _stage(self, stage: str, normal: str) -> bool:
        """Answer a stage; False when the connection is to be dropped."""
        reply = self.peer.script.replies.get(stage, normal)
        if reply == "drop":
            return False
        if reply == "stall":
            self.peer.release.wait(60)
            reply = normal
        self._send(reply)
        return True

    def handle(self) -> None:
        script = self.peer.script
        self.peer.connections += 1
        if not self._stage("connect", f"220 {script.hostname} ESMTP scripted"):
            return
        helo = ""
        mail_from: str | None = None
        mail_params = ""
        recipients: list[str] = []
        while True:
            raw = self.rfile.readline(4096)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb) :].strip()
            if verb in ("EHLO", "HELO"):
                helo = arg
                mail_from, recipients = None, []
                extensions = list(script.extensions)
                if script.starttls and not self.tls and self.peer.tls_context is not None:
                    extensions.append("STARTTLS")
                lines = [f"250-{script.hostname}"] + [f"250-{e}" for e in extensions[:-1]]
                lines.append(f"250 {extensions[-1]}" if extensions else f"250 {script.hostname}")
                if verb == "HELO":
                    lines = [f"250 {script.hostname}"]
                reply = script.replies.get("ehlo")
                if reply == "drop":
                    return
                if reply is not None:
                    self._send(reply)
                else:
                    for item in lines:
                        self._send(item)
            elif verb == "STARTTLS" and self.peer.tls_context is not None and not self.tls:
                self._send("220 2.0.0 go ahead")
                tls = self.peer.tls_context.wrap_socket(self.request, server_side=True)
                self.request = tls
                self.rfile = tls.makefile("rb")
                self.wfile = tls.makefile("wb")
                self.tls = True
                helo, mail_from, recipients = "", None, []
            elif verb == "MAIL":
                mail_from = arg.split(":", 1)[1].strip().split(" ")[0].strip("<>") if ":" in arg else ""
                mail_params = arg.split(":", 1)[1].strip().partition(" ")[2].strip() if ":" in arg else ""
                recipients = []
                if not self._stage("mail", "250 2.1.0 ok"):
                    return
                if script.replies.get("mail", "250")[0] != "2":
                    mail_from = None
            elif verb == "RCPT":
                address = arg.split(":", 1)[1].strip().split(" ")[0].strip("<>") if ":" in arg else ""
                reply = script.rcpt_replies.get(address) or script.replies.get("rcpt") or "250 2.1.5 ok"
                if reply == "drop":
                    return
                if reply == "stall":
                    self.peer.release.wait(60)
                    reply = "250 2.1.5 ok"
                self._send(reply)
                if reply.startswith("2"):
                    recipients.append(address)
            elif verb == "DATA":
                if mail_from is None or not recipients:
                    self._send("503 5.5.1 need MAIL and RCPT")
                    continue
                if not self._stage("data", "354 go ahead"):
                    return
                if script.replies.get("data", "354")[0] != "3":
                    continue
                body = bytearray()
                while True:
                    chunk = self.rfile.readline(1 << 20)
                    if not chunk:
                        return
                    if chunk == b".\r\n":
                        break
                    body += chunk[1:] if chunk.startswith(b"..") else chunk
                if not self._stage("dot", "250 2.0.0 queued"):
                    return
                if script.replies.get("dot", "250")[0] == "2":
                    with self.peer.lock:
                        self.peer.received.append(
                            Received(mail_from, list(recipients), bytes(body), self.tls, helo, mail_params)
                        )
                    self.peer.delivered.set()
                mail_from, recipients = None, []
            elif verb == "RSET":
                mail_from, recipients = None, []
                self._send("250 2.0.0 ok")
            elif verb == "NOOP":
                self._send("250 2.0.0 ok")
            elif verb == "QUIT":
                self._send("221 2.0.0 bye")
                return
            else:
                self._send("502 5.5.1 not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], peer: SmtpPeer) -> None:
        self.peer = peer  # what the handlers answer from
        super().__init__(address, _Handler)


class SmtpPeer:
    """`with SmtpPeer("127.0.0.2", 0, script) as peer: ... peer.port, peer.received`"""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        script: Script | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.script = script or Script()
        self.tls_context = tls_context
        self.received: list[Received] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.delivered = threading.Event()
        self._server = _Server((host, port), self)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> SmtpPeer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SmtpPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def can_bind(host: str) -> bool:
    """Whether this loopback address can be bound here (Linux: any 127.0.0.0/8 address)."""
    try:
        with socket.socket() as sock:
            sock.bind((host, 0))
        return True
    except OSError:
        return False


def free_port_on(*hosts: str) -> int:
    """A TCP port number free on every one of these loopback addresses."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port: int = probe.getsockname()[1]
        try:
            for host in hosts:
                with socket.socket() as sock:
                    sock.bind((host, port))
            return port
        except OSError:
            continue
    raise AssertionError("no common free port")
