"""The filter and vacation-reply settings in a real browser (Debian's Chromium through Playwright; decision
0088): filters made with the form (its script adding and switching conditions), a script error shown at its
line, a vacation reply turned on; the pages on a desktop and a phone, in English and Chinese, with
screenshots in build/screenshots/ (settings-filters-*, settings-filter-form-*, settings-vacation-*,
settings-filters-script-*)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.harness import DataDir, ServerProcess
from tests.web.browser import SCREENSHOTS
from tests.web.test_web_browser import browser, log_in, new_page

__all__ = ["browser"]  # the module's browser fixture

pytestmark = pytest.mark.integration

DEMO = "demo@example.test"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def shot(page: Any, name: str) -> None:
    """A screenshot of the whole page (these pages are read top to bottom)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the sticky bar at the top of the picture
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def words(locator: Any) -> str:
    """A locator's text as it reads, white space collapsed (the quotes around values are the CSS's)."""
    return " ".join(locator.text_content().split())


def no_overflow(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0


def make_filter(
    page: Any, name: str, conditions: list[tuple[str, str, str, str]], actions: list[str]
) -> None:
    """Fill the new-filter form: each condition (field, header, op, value) in its own row (the form's
    "Add a condition" button makes the rows after the first), then the action boxes and fields."""
    page.click("#new-filter")
    page.fill("#filter-name", name)
    rows = page.locator("#conditions .condition-row")
    for n, (field, header, op, value) in enumerate(conditions):
        if n:
            page.click("#add-condition")
        row = rows.nth(n)
        row.locator(".cond-field").select_option(field)
        if header:
            row.locator(".cond-header").fill(header)
        row.locator(".cond-op").select_option(op)
        if value:
            row.locator(".cond-value").fill(value)
    for action in actions:
        kind, _, value = action.partition("=")
        if kind == "folder":
            page.select_option("#action-folder", value)  # ticks "Move to folder" (the page's script)
        elif kind == "forward":
            page.fill("#action-forward-to", value)
        else:
            page.check(f"#action-{kind}")


def test_filters_and_a_vacation_reply_made_in_the_browser_on_a_desktop_and_a_phone_in_two_languages(
    browser: Any, web_server: tuple[DataDir, ServerProcess]
) -> None:
    data, server = web_server
    page = new_page(browser, server, viewport=DESKTOP, locale="en-US")
    log_in(page, data)
    for folder in ("Receipts", "Lists"):
        page.click(".folder-new summary")
        page.fill(".folder-new input[name=name]", folder)
        page.click(".folder-new button")
        page.wait_for_selector(f".folder-name:text-is('{folder}')")

    page.click("a.settings-link")
    page.click("#settings-filters")
    page.wait_for_selector(".empty-state")
    assert page.inner_text(".settings h1") == "Filters"

    make_filter(
        page,
        "Receipts",
        [("from", "", "contains", "shop.example"), ("subject", "", "contains", "receipt")],
        ["folder=Receipts", "read", "stop"],
    )
    assert page.is_checked("#action-move")
    assert page.locator("#conditions .condition-row").count() == 2
    assert page.is_hidden("#conditions .condition-row >> nth=1 >> .cond-header")  # only a header row has it
    shot(page, "settings-filter-form-desktop-en")
    page.click("#save-filter")
    page.wait_for_selector(".notice:has-text('The filter was saved.')")

    make_filter(page, "Mailing lists", [("header", "List-Id", "exists", "")], ["folder=Lists"])
    assert page.is_hidden("#conditions .condition-row >> nth=0 >> .cond-value")  # "exists" takes no text
    page.click("#save-filter")
    make_filter(
        page, "Large mail", [("size", "", "over", "10 MB")], ["flag", "forward=me@elsewhere.example", "keep"]
    )
    page.click("#save-filter")
    cards = page.locator(".rule-card")
    assert cards.count() == 3
    assert (
        words(cards.nth(0).locator(".rule-when"))
        == "When From contains shop.example and Subject contains receipt"
    )
    assert cards.nth(0).locator(".chip").all_inner_texts() == [
        "Mark as read",
        "Move to Receipts",
        "Stop here",
    ]
    assert words(cards.nth(1).locator(".rule-when")) == "When Header List-Id exists"
    assert words(cards.nth(2).locator(".rule-when")) == "When Size is larger than 10 MB"
    chips = cards.nth(2).locator(".chip").all_inner_texts()
    assert chips == ["Flag", "Forward to me@elsewhere.example", "Keep in Inbox"]

    # a rule written by hand, and an error: the editor marks the line and keeps what was typed
    page.click("#tab-script")
    script = page.input_value("#script")
    assert 'fileinto "Receipts";' in script
    hand_written = (
        '# rule:[Old tickets]\nif header :contains "subject" ["[ticket", "[bug"] {\n  fileinto "Lists"\n}\n'
    )
    broken = script.rstrip("\n") + "\n" + hand_written
    page.fill("#script", broken)
    page.click("#save-script")
    page.wait_for_selector(".script-error")
    error_line = broken.count("\n")  # the "}" after the fileinto without its ";"
    assert f"Line {error_line}, column 1:" in page.inner_text(".script-error-title")
    assert page.inner_text(".script-gutter .at-fault") == str(error_line)
    assert page.evaluate("document.activeElement.id") == "script"  # the cursor at the error
    shot(page, "settings-filters-script-error-desktop-en")
    page.fill("#script", broken.replace('fileinto "Lists"\n}', 'fileinto "Lists";\n}'))
    page.click("#save-script")
    page.wait_for_selector(".notice:has-text('Your filters were saved.')")
    page.click("#tab-filters")
    assert page.locator(".rule-card").count() == 4
    assert page.inner_text(".rule-card.advanced .rule-name") == "Old tickets"
    no_overflow(page)
    shot(page, "settings-filters-desktop-en")

    page.click("#tab-vacation")
    page.click(".switch-row")
    page.fill("#vacation-first", "2099-07-01")
    page.fill("#vacation-last", "2099-07-14")
    page.fill("#vacation-subject", "Out of office")
    page.fill(
        "#vacation-text",
        "I am away until 14 July, with little mail.\nFor anything urgent, write to Ada.\n\nDemo",
    )
    page.click(".more-options summary")
    page.fill("#vacation-addresses", "demo.alias@example.test")
    page.click("#save-vacation")
    page.wait_for_selector(".notice:has-text('Your vacation reply is on.')")
    assert "From Jul 1, 2099 to Jul 14, 2099" in page.inner_text(".switch-text")
    assert page.is_checked("#vacation-on")
    shot(page, "settings-vacation-desktop-en")
    page.click("#tab-script")
    stored = page.input_value("#script")
    assert 'vacation :days 7 :subject "Out of office" :addresses ["demo.alias@example.test"] text:' in stored
    assert stored.index("vacation :days 7") < stored.index('fileinto "Receipts"')  # the reply first
    page.click("#tab-filters")
    assert "From Jul 1, 2099 to Jul 14, 2099" in page.inner_text(".vacation-status")
    page.click(".settings-back a")
    section = page.locator("#filters")
    assert words(section.locator("#settings-filters")) == "Filters 4 filters ›"
    assert words(section.locator("#settings-vacation")) == "Vacation reply On ›"
    section.screenshot(path=str(SCREENSHOTS / "settings-filters-section-desktop-en.png"))
    page.context.close()

    for viewport, language, locale, size in (
        (DESKTOP, "zh", "zh-CN", "desktop"),
        (PHONE, "en", "en-US", "phone"),
        (PHONE, "zh", "zh-CN", "phone"),
        (PHONE, "zh", "zh-CN", "phone-dark"),
    ):
        scheme = "dark" if size.endswith("dark") else "light"
        other = new_page(browser, server, viewport=viewport, locale=locale, color_scheme=scheme)
        log_in(other, data)
        other.goto(other.base + "/settings/filters")
        other.wait_for_selector(".rule-card")
        assert other.inner_text(".settings h1") == ("过滤器" if language == "zh" else "Filters")
        no_overflow(other)
        shot(other, f"settings-filters-{size}-{language}")
        other.goto(other.base + "/settings/vacation")
        assert other.is_checked("#vacation-on")
        no_overflow(other)
        shot(other, f"settings-vacation-{size}-{language}")
        if size.startswith("phone"):
            other.goto(other.base + "/settings/filters")
            other.click(".rule-card >> nth=0 >> text=" + ("编辑" if language == "zh" else "Edit"))
            other.wait_for_selector("#filter-form")
            assert other.input_value("#filter-name") == "Receipts"
            no_overflow(other)
            shot(other, f"settings-filter-form-{size}-{language}")
            other.goto(other.base + "/settings/filters/script?line=3")
            no_overflow(other)
            shot(other, f"settings-filters-script-{size}-{language}")
        other.context.close()
