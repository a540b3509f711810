"""Debian's Chromium driven by Playwright (its own browser download is not possible here: `executable_path`),
started with the flags a closed machine needs, and a canary HTTP server on loopback that counts requests (so a
test can prove that a mail loaded nothing remote)."""

from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("POSTOFFICE_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    # as root in a container; the page's own sandboxing (CSP, the frame's sandbox) is what is tested
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
#: Where screenshots go (test artefacts; a few are copied into docs/screenshots by hand after a look).
SCREENSHOTS = Path(os.environ.get("POSTOFFICE_SCREENSHOTS", "build/screenshots"))


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)


class Canary:
    """An HTTP server on 127.0.0.1 that answers everything with 204 and remembers every path asked for."""

    def __init__(self) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
