"""Where the time of a webmail login goes, in Debian's Chromium: from the login form's submit to the first row
of the Inbox drawn (bench/web_load.py's "login submitted -> first row drawn"), broken down per run from the
page's own Navigation and Resource Timing, the paint entries, and each response's Server-Timing.

    .venv/bin/python bench/web_login_timing.py [--messages 2000] [--runs 20] [--verified-cache-ttl 300]
                                               [--baseline SRC]

With the default `verified_cache_ttl` (300 s) only the first login runs argon2id (as in bench/web_load.py,
whose own login comes first); `--verified-cache-ttl 0` makes every login run it, as a first login of the day
does. `--baseline SRC` starts a second server from another source tree (e.g. `mkdir /tmp/base && git archive
main src | tar -x -C /tmp/base`, then `--baseline /tmp/base/src`) on a copy of the same data and alternates
runs between the two, so that load from other processes on the machine falls on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.integration.harness import DataDir, ServerProcess, make_data_dir

from web_load import PASSWORD, USER, fill

#: Read from the Inbox page once its first row is there (all times in ms from the form's submit).
TIMINGS_JS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const paint = Object.fromEntries(performance.getEntriesByType("paint").map((e) => [e.name, e.startTime]));
  return {
    timeOrigin: performance.timeOrigin, redirectCount: nav.redirectCount,
    redirectEnd: nav.redirectEnd, fetchStart: nav.fetchStart,
    responseStart: nav.responseStart, responseEnd: nav.responseEnd,
    domInteractive: nav.domInteractive, domContentLoaded: nav.domContentLoadedEventEnd,
    fcp: paint["first-contentful-paint"] ?? NaN,
  };
}"""


def one_login(browser: Any, port: int) -> dict[str, float]:
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.goto(f"https://localhost:{port}/login")
        page.fill("#username", USER)
        page.fill("#password", PASSWORD)
        served: dict[str, float] = {}

        def on_response(response: Any) -> None:
            timing = re.search(r"app;dur=([\d.]+)", response.headers.get("server-timing", ""))
            path = re.sub(r"/box/[0-9]+", "/box/N", response.url.split(str(port), 1)[1])
            if timing and not path.startswith("/static/"):
                served[f"server time {response.request.method} {path}"] = float(timing.group(1))

        page.on("response", on_response)
        clicked, started = time.time() * 1000, time.perf_counter()
        page.click("button[type=submit]")
        page.locator(".message-row").first.wait_for()
        wall = (time.perf_counter() - started) * 1000
        t = page.evaluate(TIMINGS_JS)
        # the page's clock is the system's (same machine): how long Playwright's click took to submit
        before_submit = t["timeOrigin"] - clicked
        # Loading stops here: a response event after this line would belong to no run.
        page.remove_listener("response", on_response)
        return {
            "wall: click -> row seen by Playwright": wall,
            "click -> form submitted (Playwright's checks)": before_submit,
            "row drawn -> seen by Playwright": wall - before_submit - t["fcp"],
            "nav: submit -> redirects followed": t["redirectEnd"] or t["fetchStart"],
            "nav: submit -> Inbox response head": t["responseStart"],
            "nav: submit -> Inbox response end": t["responseEnd"],
            "nav: submit -> DOMContentLoaded": t["domContentLoaded"],
            "nav: submit -> first contentful paint": t["fcp"],
            "redirects": t["redirectCount"],
            **served,
        }
    finally:
        context.close()


def report(label: str, rows: list[dict[str, float]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    print(f"{label}: {len(rows)} runs, ms ('nav:' from the page's own Navigation Timing)")
    for key in keys:
        values = sorted(row[key] for row in rows if key in row and row[key] == row[key])  # not NaN
        if not values:
            continue
        p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
        runs = "" if len(values) == len(rows) else f"  ({len(values)} runs)"
        print(f"  {key:<48} p50 {statistics.median(values):6.1f}  p95 {p95:6.1f}  min {values[0]:6.1f}{runs}")


def start(data: DataDir, src: str | None) -> ServerProcess:
    env = None
    if src is not None:
        env = {"PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return ServerProcess(data, env=env).start()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--verified-cache-ttl", type=float, default=300)
    parser.add_argument("--baseline", metavar="SRC", help="a source tree to compare with (module notes)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="web-login-"))
    data = make_data_dir(root / "data", users=())
    text, count = re.subn(
        r"(?m)^verified_cache_ttl = .*$",
        f"verified_cache_ttl = {args.verified_cache_ttl}",
        data.config.read_text(),
    )
    assert count == 1, "no verified_cache_ttl in the config"
    data.config.write_text(text)
    asyncio.run(fill(data.root / "store" / "mail.sqlite3", args.messages, 4096))
    servers = {"this tree": start(data, None)}
    if args.baseline:
        shutil.copytree(data.root, root / "baseline")
        copy = DataDir(root / "baseline", root / "baseline" / "postoffice.toml")
        copy.config.write_text(copy.config.read_text().replace(str(data.root), str(copy.root)))
        servers["baseline"] = start(copy, args.baseline)
    from playwright.sync_api import sync_playwright
    from tests.web.browser import launch

    rows: dict[str, list[dict[str, float]]] = {label: [] for label in servers}
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                for _ in range(args.runs):
                    for label, server in servers.items():
                        rows[label].append(one_login(browser, server.port("https")))
            finally:
                browser.close()
    finally:
        for server in servers.values():
            server.stop()
    for label, measured in rows.items():
        report(label, measured)


if __name__ == "__main__":
    main()
