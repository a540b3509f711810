"""HTML mail, made safe to show (docs/decisions/0046).

Two layers, either of which alone stops a script:
1. nh3 (the Rust sanitiser ammonia) keeps an allowlist of tags and attributes: no script, no event
   handler, no form, no frame, no `<base>`, no `<meta>`, no SVG or MathML, no `<style>` element; URLs only
   http, https, mailto and cid; links get rel="noopener noreferrer nofollow" and open in a new tab.
2. The sanitised HTML is served as its own document (`/box/<id>/<uid>/body`) in a frame with an empty
   `sandbox` attribute (no scripts, no forms, no same-origin) and its own Content-Security-Policy:
   `default-src 'none'`, inline styles only, images only from `data:` URLs and this site (the message's own
   `cid:` parts, RFC 2392, rewritten to their URLs). Remote images and every other remote resource (tracking
   pixels, CSS `url()`) therefore never load.
"""

from __future__ import annotations

import re

import nh3
from markupsafe import Markup, escape

TAGS = set(nh3.ALLOWED_TAGS) | {"font", "center", "big", "tfoot"}
ATTRIBUTES: dict[str, set[str]] = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
GLOBAL_ATTRIBUTES = {
    "style",
    "title",
    "lang",
    "dir",
    "class",
    "align",
    "valign",
    "bgcolor",
    "width",
    "height",
}
for _tag in TAGS:
    ATTRIBUTES.setdefault(_tag, set()).update(GLOBAL_ATTRIBUTES)
ATTRIBUTES["font"].update({"color", "face", "size"})
ATTRIBUTES["table"].update({"border", "cellpadding", "cellspacing"})
ATTRIBUTES["a"].discard("target")
URL_SCHEMES = {"http", "https", "mailto", "cid"}

#: The frame document's policy (module notes).
FRAME_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: 'self'; font-src data:; "
    "form-action 'none'; frame-ancestors 'self'; base-uri 'none'; sandbox allow-popups "
    "allow-popups-to-escape-sandbox"
)

#: The same once the person chose to load this message's remote images (nothing else remote; no script).
FRAME_CSP_WITH_IMAGES = FRAME_CSP.replace("img-src data: 'self'", "img-src data: 'self' https: http:")

_REMOTE_IMAGE = re.compile(r"""<img\b[^>]*\bsrc="https?://""", re.IGNORECASE)


def has_remote_images(sanitised: str) -> bool:
    """Whether the sanitised HTML refers to images on other servers (which stay blocked unless allowed)."""
    return _REMOTE_IMAGE.search(sanitised) is not None


_FRAME_HEAD = (
    '<!DOCTYPE html><html><head><meta charset="utf-8">'
    '<meta name="color-scheme" content="light dark">'
    "<style>body{margin:0;padding:12px;font:15px/1.5 system-ui,sans-serif;word-wrap:break-word}"
    "img{max-width:100%;height:auto}pre{white-space:pre-wrap}</style></head><body>"
)


def sanitise(html: str) -> str:
    return nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )


def frame_document(sanitised: str) -> str:
    """The document the sandboxed frame shows."""
    return f"{_FRAME_HEAD}{sanitised}</body></html>"


_URL = re.compile(r"\b(?:https?://|mailto:)[^\s<>\"']+[^\s<>\"'.,;:!?)\]}]", re.IGNORECASE)


def text_to_html(text: str, quoted_label: str) -> Markup:
    """A text/plain body as HTML: escaped, links clickable (http, https, mailto; opened in a new tab without
    a referrer), and each block of quoted lines ("> ...") folded away under `quoted_label`."""
    out: list[str] = []
    block: list[str] = []

    def line_html(line: str) -> str:
        parts: list[str] = []
        last = 0
        for match in _URL.finditer(line):
            parts.append(str(escape(line[last : match.start()])))
            url = escape(match.group(0))
            parts.append(f'<a href="{url}" target="_blank" rel="noopener noreferrer nofollow">{url}</a>')
            last = match.end()
        parts.append(str(escape(line[last:])))
        return "".join(parts)

    def flush() -> None:
        if block:
            inner = "\n".join(line_html(line) for line in block)
            out.append(
                f'<details class="quoted"><summary>{escape(quoted_label)} …</summary>{inner}</details>'
            )
            block.clear()

    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith(">"):
            block.append(line)
            continue
        flush()
        out.append(line_html(line) + "\n")
    flush()
    return Markup("".join(out))  # noqa: S704 - every piece of the text went through escape() above
