"""Parse time of messages shaped to make the MIME parser work hard (tests/message/pathological.py), the
measurement behind issue 9 item 1: messages up to 256 KiB are parsed on the event loop.

Prints CPU time per parse (the best of --repeat runs, so that other load on the machine matters little).
With --src, the `postoffice` package is imported from that directory instead, to compare with another
version (e.g. `git archive be22cee src | tar -x -C /tmp/old` and --src /tmp/old/src):

    .venv/bin/python bench/pathological_mime.py [--size 256000] [--repeat 5] [--src DIR]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=250 * 1024)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--src", type=Path, default=ROOT / "src")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(args.src))
    from tests.message.pathological import pathological_messages

    from postoffice.message import parse_message

    print(f"postoffice from {Path(sys.modules['postoffice'].__file__ or '').parent}")
    print("| message | KiB | parse ms (CPU) | parts |")
    print("|---|---|---|---|")
    for name, raw in pathological_messages(args.size).items():
        best = float("inf")
        parts = 0
        for _ in range(args.repeat):
            started = time.process_time()
            parsed = parse_message(io.BytesIO(raw))
            best = min(best, time.process_time() - started)
            parts = _count(parsed.body)
        print(f"| {name} | {len(raw) // 1024} | {best * 1000:.1f} | {parts} |", flush=True)


def _count(part: object) -> int:
    children = list(getattr(part, "parts", []))
    embedded = getattr(part, "embedded", None)
    if embedded is not None:
        children.append(embedded)
    return 1 + sum(_count(child) for child in children)


if __name__ == "__main__":
    main()
