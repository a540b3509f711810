"""A small HTTPS client for the web tests: real TLS to the server's https listener (its certificate checked
against the data directory's), cookies kept like a browser keeps them, redirects not followed."""

from __future__ import annotations

import http.client
import re
import ssl
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from urllib.parse import urlencode

from tests.integration.harness import DataDir, ServerProcess


def set_cookie_values(headers: Message) -> list[str]:
    return [str(v) for v in headers.get_all("set-cookie", [])]


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str:
        return str(self.headers.get(name, ""))


@dataclass
class WebClient:
    port: int
    cafile: Path
    cookies: dict[str, str] = field(default_factory=dict)
    host: str = "localhost"

    @classmethod
    def of(cls, server: ServerProcess, data: DataDir) -> WebClient:
        return cls(server.port("https"), data.root / "tls" / "cert.pem")

    @property
    def origin(self) -> str:
        return f"https://{self.host}:{self.port}"

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        context = ssl.create_default_context(cafile=str(self.cafile))
        conn = http.client.HTTPSConnection(self.host, self.port, context=context, timeout=30)
        all_headers = dict(headers or {})
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        finally:
            conn.close()
        for value in set_cookie_values(reply.headers):
            name, _, rest = value.partition("=")
            content = rest.split(";", 1)[0]
            if "max-age=0" in value.lower():
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = content
        return reply

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, form: dict[str, str], headers: dict[str, str] | None = None) -> Reply:
        all_headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": self.origin}
        all_headers.update(headers or {})
        return self.request("POST", path, urlencode(form).encode(), all_headers)

    def post_multipart(
        self,
        path: str,
        fields: dict[str, str],
        files: list[tuple[str, str, str, bytes]] = (),  # type: ignore[assignment]
    ) -> Reply:
        """A multipart/form-data POST (RFC 7578): `files` are (field, file name, type, data)."""
        boundary = "----postoffice-test-boundary-7MA4YWxkTrZu0gW"
        parts: list[bytes] = []
        for name, value in fields.items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                + value.encode()
                + b"\r\n"
            )
        for name, filename, kind, data in files:
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {kind}\r\n\r\n"
            )
            parts.append(head.encode() + data + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Origin": self.origin}
        return self.request("POST", path, body, headers)

    def login(self, address: str, password: str, **extra: str) -> Reply:
        page = self.get("/login")
        match = re.search(r'name="login_token" value="([^"]+)"', page.text)
        if match is None:
            raise AssertionError(f"no login form: {page.status} {page.text[:200]}")
        return self.post(
            "/login", {"login_token": match.group(1), "username": address, "password": password, **extra}
        )

    def csrf(self, page: Reply) -> str:
        match = re.search(r'name="csrf" value="([^"]+)"', page.text)
        if match is None:
            raise AssertionError("no csrf token on the page")
        return match.group(1)
