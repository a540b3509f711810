"""MIME parsed once, at delivery: ENVELOPE, body structure with byte offsets, and search text.

Every message is parsed when it is delivered; the resulting `ParsedMessage` is stored as JSON beside the
message and serves IMAP FETCH ENVELOPE / BODYSTRUCTURE / BODY[section] and SEARCH without parsing again.

Implementation notes
- Standards: RFC 5322 (header blocks, unfolding 2.2.3, addresses 3.4, dates 3.3), RFC 2045 (Content-Type,
  Content-Transfer-Encoding, defaults 5.2), RFC 2046 (multipart 5.1, boundaries 5.1.1, digest 5.1.5,
  message/rfc822 5.2.1), RFC 2047 (encoded words), RFC 2183 (Content-Disposition), RFC 2231 (parameter
  continuations and charsets), RFC 6532 (UTF-8 headers, message/global), RFC 3501 7.4.2 / RFC 9051 7.5.2
  (ENVELOPE and BODYSTRUCTURE field values).
- Split of work: the offset-aware structure splitter (`parser`, over `scanner`) is ours, because the stdlib
  does not report byte offsets; header semantics use the stdlib `email` package (`headers`): encoded words,
  RFC 2231 parameters, dates. Address lists have their own tokenizer (`addresses` says why).
- Memory: the message is streamed in 64 KiB chunks, never read whole (messages may be 50 MB). Header bytes,
  nesting depth, part count, addresses, search text and search headers are capped (`parser` constants);
  `search_truncated` says when the search text was cut.
- Never raises for any input bytes: malformed MIME is degraded to a best-effort structure by documented rules
  (`parser` docstring, docs/decisions/0003-mime-parsing.md). I/O errors of the file do propagate.

Invariants every change must keep (tested for every parsed message, including fuzzed ones):
- Offsets: 0 <= header_start <= body_start <= body_end <= size; children inside their parent's body, in
  order; an embedded message spans exactly its message/rfc822 part's body. `raw[header_start:body_start]` is
  the part's header (with its ending empty line when there is one) and `raw[body_start:body_end]` its body as
  stored (IMAP BODY[n.MIME] and BODY[n]).
- Structure: a multipart has at least one part; message/rfc822|global has `embedded` and `envelope`.
- `lines` counts line terminators (CRLF, LF or CR) in the body, plus one if the body is non-empty and does not
  end with one.
- Every string is valid Unicode (no surrogates); `ParsedMessage.from_json(m.to_json()) == m`.
- Envelope strings are raw (unfolded, not decoded, surrounding whitespace removed), as IMAP sends them;
  `subject`, `from_display` and `search_headers` are decoded for display and search.
- Empty Content-ID / Content-Description / Content-MD5 / Content-Location values are None; envelope fields
  that are present but empty are "".
"""

from postoffice.message.headers import unfold
from postoffice.message.model import BodyPart, ParsedMessage, envelope_addresses
from postoffice.message.parser import (
    MAX_ADDRESS_TOKENS,
    MAX_ADDRESSES,
    MAX_DEPTH,
    MAX_HEADER_BYTES,
    MAX_HEADER_LINES,
    MAX_PARTS,
    MAX_SEARCH_HEADERS,
    MAX_SEARCH_TEXT,
    MAX_TOTAL_HEADER_BYTES,
    PARSE_INLINE_LIMIT,
    parse_message,
)

__all__ = [
    "MAX_ADDRESSES",
    "MAX_ADDRESS_TOKENS",
    "MAX_DEPTH",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_LINES",
    "MAX_PARTS",
    "MAX_SEARCH_HEADERS",
    "MAX_SEARCH_TEXT",
    "MAX_TOTAL_HEADER_BYTES",
    "PARSE_INLINE_LIMIT",
    "BodyPart",
    "ParsedMessage",
    "envelope_addresses",
    "parse_message",
    "unfold",
]
