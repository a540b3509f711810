"""Messages shaped to make a MIME parser work hard, at a chosen size (issue 9 item 1): the shapes found while
auditing the parser, for `bench/pathological_mime.py` and the time-bound tests. Each is valid enough to be
delivered; none needs more than linear work from a parser that keeps its caps."""

from __future__ import annotations

from collections.abc import Callable

HEAD = b"From: a@b.example\r\nTo: c@d.example\r\nSubject: x\r\n"
MIXED = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'


def _fill(size: int, unit: bytes, head: bytes = b"", tail: bytes = b"") -> bytes:
    return head + unit * max(1, (size - len(head) - len(tail)) // len(unit)) + tail


def _numbered(size: int, head: bytes, unit: Callable[[int], bytes], tail: bytes) -> bytes:
    pieces = [head]
    total = len(head) + len(tail)
    i = 0
    while total < size:
        piece = unit(i)
        pieces.append(piece)
        total += len(piece)
        i += 1
    pieces.append(tail)
    return b"".join(pieces)


def pathological_messages(size: int = 250 * 1024) -> dict[str, bytes]:
    """Name -> message of about `size` octets."""
    qp = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    return {
        "tiny parts": _fill(size, b"--b\r\n\r\n", HEAD + MIXED, b"--b--\r\n"),
        "tiny parts with a header": _fill(
            size, b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nx\r\n", HEAD + MIXED, b"--b--\r\n"
        ),
        "sibling multiparts, own boundaries": _numbered(
            size,
            HEAD + MIXED,
            lambda i: (
                b'--b\r\nContent-Type: multipart/mixed; boundary="c%d"\r\n\r\n--c%d\r\n\r\nx\r\n--c%d--\r\n'
                % (i, i, i)
            ),
            b"--b--\r\n",
        ),
        "deep nesting": _numbered(
            size,
            HEAD,
            lambda i: b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (i, i),
            b"x",
        ),
        "message/rfc822 chain": _fill(size, b"Content-Type: message/rfc822\r\n\r\n", HEAD),
        "many header fields": _fill(size, b"X-A: b\r\n", HEAD, b"\r\nbody\r\n"),
        "many From fields": _fill(size, b"From: a@b\r\n", HEAD, b"\r\nbody\r\n"),
        "many continuation lines": _fill(size, b" c\r\n", HEAD + b"X-A: b\r\n", b"\r\nbody\r\n"),
        "non-field lines between fields": _fill(size, b"garbage line\r\nX: y\r\n", HEAD, b"\r\nbody\r\n"),
        "encoded words (Q)": _fill(size, b"=?utf-8?q?a?= ", HEAD + b"Subject: ", b"\r\n\r\nbody\r\n"),
        "encoded words (B)": _fill(size, b"=?utf-8?b?w6k=?= ", HEAD + b"Subject: ", b"\r\n\r\nbody\r\n"),
        "many addresses": _fill(size, b"a@b, ", b"Subject: x\r\nTo: ", b"\r\n\r\nbody\r\n"),
        "address tokens and comments": _fill(size, b"a (b) @ (c) d . ", b"Subject: x\r\nTo: ", b"\r\n\r\n"),
        "nested comment": _fill(size, b"(", b"Subject: x\r\nTo: ", b"\r\n\r\nbody\r\n"),
        "quoted pairs": _fill(size, b'"\\', b"Subject: x\r\nTo: ", b"\r\n\r\nbody\r\n"),
        "many parameters": _fill(size, b"; a=b", HEAD + b"Content-Type: text/plain", b"\r\n\r\nbody\r\n"),
        "distinct charsets": _numbered(
            size,
            HEAD + MIXED,
            lambda i: b'--b\r\nContent-Type: text/plain; charset="x-unknown-%d"\r\n\r\nx\r\n' % i,
            b"--b--\r\n",
        ),
        "base64 text parts": _fill(
            size,
            b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nYQ==\r\n",
            HEAD + MIXED,
            b"--b--\r\n",
        ),
        "digest of tiny messages": _fill(
            size,
            b"--b\r\n\r\nFrom: a@b\r\nTo: c@d\r\n\r\nx\r\n",
            HEAD + b'Content-Type: multipart/digest; boundary="b"\r\n\r\n',
            b"--b--\r\n",
        ),
        "base64 junk": _fill(size, b"!@#$%^&*()QQ\r\n", HEAD + b"Content-Transfer-Encoding: base64\r\n\r\n"),
        "quoted-printable line of escapes": _fill(size, b"=4", HEAD + qp),
        "dash lines in a multipart": _fill(size, b"--b-\r\n", HEAD + MIXED + b"--b\r\n\r\n", b"--b--\r\n"),
        "bare CRs": _fill(size, b"\r", HEAD + b"\r\n"),
    }
