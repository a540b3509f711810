"""The reference tables of docs/configuration.md, generated from the declarations (docs/decisions/0033).

The prose of docs/configuration.md is written by hand; each table between a marker and `<!-- end generated
-->` is replaced by what the declarations say:

- `<!-- generated: [SECTION] -->`: every setting of the section with its default and meaning
  (`postoffice.settings`, the package's `settings.py`);
- `<!-- generated: listener keys -->`: the keys of a `[listeners.NAME]` table;
- `<!-- generated: standard listeners -->`: the standard listeners of every registered protocol
  (`postoffice.protocols`).

Every section must have its marker, so a new section cannot go undocumented.
`python -m postoffice.config_doc [--check] [FILE]` rewrites FILE (default docs/configuration.md), or with
`--check` exits 1 when it is out of date; tests/test_config.py runs the check.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from postoffice.config import (
    config_sections,
    default_enabled,
    is_built,
    listener_settings,
    standard_listeners,
)
from postoffice.settings import Section, toml_value

DEFAULT_FILE = Path("docs") / "configuration.md"

_BLOCK = re.compile(r"(<!-- generated: (?P<what>[^>]+?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def section_table(spec: Section) -> str:
    lines = ["| Setting | Default | Meaning |", "|---|---|---|"]
    for item in spec.settings:
        default = item.doc_default or f"`{toml_value(item.default)}`"
        lines.append(f"| `{item.name}` | {_cell(default)} | {_cell(item.doc or item.comment)} |")
    return "\n".join(lines) + "\n"


def listener_keys_table() -> str:
    lines = ["| Key | Meaning |", "|---|---|"]
    lines += [f"| `{item.name}` | {_cell(item.doc or item.comment)} |" for item in listener_settings()]
    return "\n".join(lines) + "\n"


def standard_listeners_table() -> str:
    lines = ["| Name | Protocol | Port | TLS | Enabled | Purpose |", "|---|---|---|---|---|---|"]
    for standard in standard_listeners().values():
        if default_enabled(standard):
            enabled = "yes"
        elif not is_built(standard.protocol):
            enabled = "no (not built yet)"
        else:
            enabled = "**no**"
        lines.append(
            f"| `{standard.name}` | {standard.protocol} | {standard.port} | {standard.tls} | {enabled} | "
            f"{_cell(standard.purpose)} |"
        )
    return "\n".join(lines) + "\n"


def generated_tables() -> dict[str, str]:
    """Every generated table by its marker name."""
    tables = {f"[{spec.name}]": section_table(spec) for spec in config_sections()}
    tables["listener keys"] = listener_keys_table()
    tables["standard listeners"] = standard_listeners_table()
    return tables


def render(text: str) -> str:
    """`text` (docs/configuration.md) with every generated table brought up to date. ValueError when a
    table has no marker, or a marker names no table."""
    tables = generated_tables()
    seen: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        what = match.group("what")
        if what not in tables:
            raise ValueError(f"<!-- generated: {what} -->: no such table (known: {', '.join(tables)})")
        seen.add(what)
        return f"{match.group(1)}{tables[what]}{match.group(4)}"

    result = _BLOCK.sub(replace, text)
    missing = [what for what in tables if what not in seen]
    if missing:
        raise ValueError(f"no <!-- generated: ... --> marker for {', '.join(missing)}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m postoffice.config_doc", description="update the generated tables of the config docs"
    )
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is out of date")
    args = parser.parse_args(argv)
    text = args.file.read_text()
    try:
        new = render(text)
    except ValueError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 2
    if new == text:
        return 0
    if args.check:
        print(f"{args.file} is out of date: run python -m postoffice.config_doc", file=sys.stderr)
        return 1
    args.file.write_text(new)
    print(f"updated {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
