"""The documentation's references hold: every decision a source file or document names exists, under the
name it is cited by."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DECISIONS = {
    path.name[:4]: path.name for path in (ROOT / "docs" / "decisions").glob("[0-9][0-9][0-9][0-9]-*.md")
}
#: "docs/decisions/0016", "decisions/0008-authentication.md", "decision 0023", "decisions 0017-0019"
CITATION = re.compile(
    r"decisions/(?P<num>\d{4})(?:-(?P<to>\d{4})\b|(?P<slug>-[a-z0-9-]*[a-z0-9]))?"
    r"|[Dd]ecisions? (?P<bare>\d{4})"
)


def _texts() -> list[Path]:
    paths = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("*.py")]
    return [*paths, *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]


def test_decision_files_are_numbered_once() -> None:
    numbers = [path.name[:4] for path in (ROOT / "docs" / "decisions").glob("*.md")]
    assert len(numbers) == len(set(numbers))


def test_every_cited_decision_exists_under_the_cited_name() -> None:
    problems: list[str] = []
    for path in _texts():
        if path == Path(__file__).resolve():
            continue
        for match in CITATION.finditer(path.read_text(encoding="utf-8")):
            number = match.group("num") or match.group("bare")
            cited = [number] + ([match.group("to")] if match.group("to") else [])
            problems.extend(
                f"{path.relative_to(ROOT)}: {match.group(0)!r} does not exist"
                for num in cited
                if num not in DECISIONS
            )
            slug = match.group("slug")
            if slug and not DECISIONS.get(number, "").startswith(number + slug):
                problems.append(f"{path.relative_to(ROOT)}: {match.group(0)!r} is {DECISIONS.get(number)}")
    assert problems == []
