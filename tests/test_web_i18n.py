"""Translations of the webmail (docs/decisions/0046): every string the templates and the code translate has
a Simplified Chinese translation, the catalog compiles, and the language choice follows Accept-Language."""

from __future__ import annotations

import ast
import re
from importlib import resources

import pytest
from babel.messages.pofile import read_po

from postoffice.web.i18n import Formatter, choose_language, translations

WEB = resources.files("postoffice.web")


def used_strings() -> set[str]:
    found: set[str] = set()
    sources = [p for p in WEB.joinpath("templates").iterdir() if p.name.endswith(".html")]
    sources += [WEB.joinpath(name) for name in ("app.py", "mailview.py", "admin.py", "security.py")]
    # the filter pages: their messages, and the form's problems the rules module names (docs/decisions/0088)
    sources += [WEB.joinpath("filter_pages.py"), WEB.joinpath("filters.py")]
    # the DNS and reports pages: their modules (error details), and the record purposes and check details the
    # DNS page shows through gettext
    sources += [WEB.joinpath("admin_dns.py"), WEB.joinpath("admin_reports.py")]
    sources += [resources.files("postoffice.directory").joinpath("dns_records.py")]
    for source in sources:
        text = source.read_text(encoding="utf-8")
        # error details are shown translated (error.html: _(detail))
        found |= set(re.findall(r'HTTPException\(\d+, "([^"]+)"\)', text))
        if source.name.endswith(".py"):
            found |= python_strings(text)
            continue
        found |= set(re.findall(r'(?:\b_|gettext)\(\s*"((?:[^"\\]|\\.)+)"', text))
        found |= set(re.findall(r"(?:\b_|gettext)\(\s*'((?:[^'\\]|\\.)+)'", text))
        found |= set(re.findall(r'ngettext\(\s*"((?:[^"\\]|\\.)+)"', text))
    return found


def python_strings(text: str) -> set[str]:
    """The messages of `_(...)`, `gettext(...)` and `ngettext(...)` calls in Python source, read as Python
    reads them: a message written as adjacent literals over several lines is one string (the regular
    expressions above see only its first piece)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        first = node.args[0]
        if (
            name in ("_", "gettext", "ngettext")
            and isinstance(first, ast.Constant)
            and isinstance(first.value, str)
        ):
            found.add(first.value)
    return found


def test_every_translated_string_has_a_chinese_translation() -> None:
    with WEB.joinpath("locale", "zh_CN", "LC_MESSAGES", "messages.po").open("rb") as po:
        catalog = read_po(po, locale="zh_CN")
    translated = {m.id if isinstance(m.id, str) else m.id[0]: m.string for m in catalog if m.id}
    used = used_strings()
    assert len(used) > 40
    missing = sorted(s for s in used if not translated.get(s))
    assert missing == []
    assert translations("zh_CN").gettext("Inbox") == "收件箱"
    assert translations("zh_CN").ngettext("%(num)d message", "%(num)d messages", 5) == "%(num)d 封邮件"
    assert translations("en").gettext("Inbox") == "Inbox"


@pytest.mark.parametrize(
    ("cookie", "accept", "expected"),
    [
        (None, None, "en"),
        (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh_CN"),
        (None, "zh-Hans", "zh_CN"),
        (None, "zh-TW,zh;q=0.9", "zh_CN"),  # zh-TW is not translated; plain zh is Simplified
        (None, "zh-TW", "en"),
        (None, "fr, en;q=0.5, zh;q=0.1", "en"),
        (None, "en;q=0.2, zh;q=0.8", "zh_CN"),
        (None, "zh;q=0, en", "en"),
        (None, "de-DE, fr;q=0.9", "en"),
        ("zh_CN", "en", "zh_CN"),
        ("xx", "zh", "zh_CN"),
        (None, "q=;;,,;q=abc, zh", "zh_CN"),
    ],
)
def test_the_language_choice(cookie: str | None, accept: str | None, expected: str) -> None:
    assert choose_language(cookie, accept) == expected


def test_sizes_and_dates_follow_the_locale() -> None:
    assert Formatter("en").size(1536) == "1.5 KB"
    assert Formatter("en").size(500) == "500 B"
    assert Formatter("zh_CN").size(3 * 1024 * 1024) == "3 MB"
    now = 1_800_000_000.0
    assert Formatter("zh_CN").when(now - 400 * 86400, now).endswith("日")
    assert Formatter("en").when(None, now) == ""
