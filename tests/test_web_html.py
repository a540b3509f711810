"""How the webmail shows mail text and HTML (postoffice.web.html): text escaped with its links clickable
and quotes folded; HTML through nh3's allowlist (the browser tests check what runs and loads)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from postoffice.web.html import sanitise, text_to_html


def test_text_links_and_quotes() -> None:
    html = str(text_to_html("See https://example.org/a?b=1&c=2.\n> old\n> older\nnew <b>", "Quoted"))
    assert (
        '<a href="https://example.org/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer nofollow">'
        in html
    )
    assert "2</a>.\n" in html  # the sentence's full stop is not part of the link
    assert '<details class="quoted"><summary>Quoted …</summary>&gt; old\n&gt; older</details>' in html
    assert "new &lt;b&gt;" in html
    assert "<a" not in str(text_to_html("javascript:alert(1) data:text/html,x", "Q"))


@given(st.text(max_size=500))
def test_any_text_becomes_markup_without_tags_of_its_own(text: str) -> None:
    html = str(text_to_html(text, "Q"))
    stripped = html.replace('<details class="quoted"><summary>Q …</summary>', "").replace("</details>", "")
    without_links = re.sub(
        r'<a href="[^"<>]*" target="_blank" rel="noopener noreferrer nofollow">|</a>', "", stripped
    )
    assert "<" not in without_links


@given(st.text(max_size=500))
def test_sanitised_html_has_no_script_or_handler(text: str) -> None:
    cleaned = sanitise(f"<p>{text}</p><script>x</script><img src=x onerror=y>").lower()
    assert "<script" not in cleaned
    assert "onerror" not in cleaned


def test_list_snippets_lose_the_markup_of_html_parts() -> None:
    from postoffice.web.mailview import _snippet

    assert _snippet("<html><head><style>p{}</style></head><body><p>Hi &amp; bye</p>") == "Hi & bye"
    assert _snippet("plain: a < b, and b > c") == "plain: a < b, and b > c"
    assert _snippet("<p>cut off <a href='x") == "cut off"
    assert len(_snippet("word " * 500)) <= 140
