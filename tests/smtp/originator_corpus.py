"""Originator fields of submitted messages: what mail clients send (accepted) and ways to claim to be
someone else (refused). Shared by the fast policy tests (tests/smtp/test_smtp_originator.py) and the
end-to-end tests on a real server (tests/integration/test_submission_originator.py).

The account is demo@example.test; it owns the alias demo.alias@example.test (and, through plus-addressing,
demo+tag@example.test), not other@example.test (another account) nor team@example.test (a list alias of
both). Each entry: a name, the header fields before "To:" and "Subject:", and the reply to the end of data as
"code enhanced". Issue 9's four forms come first."""

from __future__ import annotations

ACCEPTED = b"250 2.0.0"
REFUSED = b"553 5.7.1"
MALFORMED = b"554 5.6.0"

# The four forms of the issue first, then more ways to claim to be someone else.
CORPUS: list[tuple[str, bytes, bytes]] = [
    ("second From", b"From: demo@example.test\r\nFrom: Bob <other@example.test>\r\n", REFUSED),
    ("group-like trailing colon", b"From: other@example.test:\r\n", REFUSED),
    ("quoted string only", b'From: "other@example.test"\r\n', REFUSED),
    ("folded onto two lines", b"From:\r\n other@example.test\r\n", REFUSED),
    ("folded name and address", b"From: Demo\r\n <other@example.test>\r\n", REFUSED),
    (
        "two addresses, one foreign",
        b"From: demo@example.test, other@example.test\r\nSender: demo@example.test\r\n",
        REFUSED,
    ),
    ("address as display name", b"From: other@example.test <demo@example.test>\r\n", REFUSED),
    ("quoted address as display name", b'From: "other@example.test" <demo@example.test>\r\n', REFUSED),
    (
        "encoded address as display name",
        b"From: =?utf-8?q?other=40example.test?= <demo@example.test>\r\n",
        REFUSED,
    ),
    (
        "base64 address as display name",
        b"From: =?utf-8?b?b3RoZXJAZXhhbXBsZS50ZXN0?= <demo@example.test>\r\n",
        REFUSED,
    ),
    ("fullwidth at in display name", "From: other＠example.test <demo@example.test>\r\n".encode(), REFUSED),
    (
        "escaped quote hides an address",
        b'From: "Demo\\" <other@example.test>" <demo@example.test>\r\n',
        REFUSED,
    ),
    ("angle address then addr-spec", b"From: <other@example.test>demo@example.test\r\n", REFUSED),
    ("two angle addresses", b"From: Demo <demo@example.test> <other@example.test>\r\n", REFUSED),
    ("address in a comment", b"From: demo@example.test (other@example.test)\r\n", REFUSED),
    ("no space after the colon", b"From:other@example.test\r\n", REFUSED),
    ("upper-case name", b"FROM: other@example.test\r\n", REFUSED),
    ("space before the colon", b"From : other@example.test\r\n", REFUSED),
    ("second From in lower case", b"From: Demo <demo@example.test>\r\nfrom: other@example.test\r\n", REFUSED),
    (
        "second From with space before colon",
        b"From: demo@example.test\r\nFrom\t: other@example.test\r\n",
        REFUSED,
    ),
    ("the same From twice", b"From: demo@example.test\r\nFrom: demo@example.test\r\n", REFUSED),
    ("NUL inside", b"From: demo@example.test\x00other@example.test\r\n", REFUSED),
    ("control character at the end", b"From: demo@example.test\x01\r\n", REFUSED),
    ("DEL inside", b"From: demo@exa\x7fmple.test\r\n", REFUSED),
    ("lone CR starts a second From", b"From: demo@example.test\rFrom: other@example.test\r\n", REFUSED),
    ("bare LF starts a second From", b"From: demo@example.test\nFrom: other@example.test\r\n", REFUSED),
    ("continuation adds an address", b"From: demo@example.test\r\n\tother@example.test\r\n", REFUSED),
    ("semicolon as separator", b"From: demo@example.test;other@example.test\r\n", REFUSED),
    ("empty group", b"From: undisclosed-recipients:;\r\n", REFUSED),
    ("group with own address", b"From: Team: demo@example.test;\r\n", REFUSED),
    ("source route to another", b"From: <@relay.test:other@example.test>\r\n", REFUSED),
    ("source route to self", b"From: <@relay.test:demo@example.test>\r\n", REFUSED),
    ("quoted local part of another", b'From: "other"@example.test\r\n', REFUSED),
    ("quoted local part with an at", b'From: "other@example.test"@example.test\r\n', REFUSED),
    ("encoded word as local part", b"From: =?utf-8?q?demo?=@example.test\r\n", REFUSED),
    ("obsolete local part", b"From: demo . alias@example.test\r\n", REFUSED),
    ("obsolete domain", b"From: demo@example . test\r\n", REFUSED),
    ("trailing dot in the domain", b"From: demo@example.test.\r\n", REFUSED),
    ("double at", b"From: demo@@example.test\r\n", REFUSED),
    ("empty list element", b"From: demo@example.test,\r\n", REFUSED),
    ("unterminated angle address", b"From: Demo <demo@example.test\r\n", REFUSED),
    ("unterminated comment", b"From: demo@example.test (Demo\r\n", REFUSED),
    ("unterminated quoted string", b'From: "Demo <demo@example.test>\r\n', REFUSED),
    ("address literal", b"From: demo@[127.0.0.1]\r\n", REFUSED),
    ("empty From", b"From: \r\n", REFUSED),
    ("no From at all", b"Subject: anonymous\r\n", REFUSED),
    ("list alias", b"From: team@example.test\r\n", REFUSED),
    ("two own addresses without Sender", b"From: demo@example.test, demo.alias@example.test\r\n", REFUSED),
    ("Sender of another", b"From: demo@example.test\r\nSender: other@example.test\r\n", REFUSED),
    (
        "two Senders",
        b"From: demo@example.test\r\nSender: demo@example.test\r\nSender: demo@example.test\r\n",
        REFUSED,
    ),
    (
        "Sender with two addresses",
        b"From: demo@example.test\r\nSender: demo@example.test, demo.alias@example.test\r\n",
        REFUSED,
    ),
    ("Resent-From of another", b"From: demo@example.test\r\nResent-From: other@example.test\r\n", REFUSED),
    (
        "second Resent-From of another",
        b"From: demo@example.test\r\nResent-From: demo@example.test\r\nResent-From: other@example.test\r\n",
        REFUSED,
    ),
    (
        "Resent-Sender of another",
        b"From: demo@example.test\r\nResent-From: demo@example.test\r\nResent-Sender: other@example.test\r\n",
        REFUSED,
    ),
    ("bidi override in the address", "From: demo@example.test\u202e\r\n".encode(), REFUSED),
    ("line separator in the address", "From: demo\u2028@example.test\r\n".encode(), REFUSED),
    ("homoglyph domain", "From: demo@ex\u0430mple.test\r\n".encode(), REFUSED),
    ("not UTF-8", b"From: \xff\xfe Demo <demo@example.test>\r\n", REFUSED),
    ("non-ASCII address without SMTPUTF8", "From: démo@example.test\r\n".encode(), REFUSED),
    (
        "line that is not a field",
        b"From: demo@example.test\r\nnot a header line\r\nFrom: other@example.test\r\n",
        MALFORMED,
    ),
    ("NUL in a field name", b"From: demo@example.test\r\nFr\x00om: other@example.test\r\n", MALFORMED),
    ("whitespace-only line", b"From: demo@example.test\r\n \r\nFrom: other@example.test\r\n", MALFORMED),
    (
        "header starts with a continuation",
        b" From: other@example.test\r\nFrom: demo@example.test\r\n",
        MALFORMED,
    ),
    (
        "mbox From_ line",
        b"From other@example.test Mon Jan  1 00:00:00 2024\r\nFrom: demo@example.test\r\n",
        MALFORMED,
    ),
    # what mail clients send: accepted
    ("plain address", b"From: demo@example.test\r\n", ACCEPTED),
    ("display name", b"From: Demo User <demo@example.test>\r\n", ACCEPTED),
    ("quoted display name with comma", b'From: "User, Demo" <demo@example.test>\r\n', ACCEPTED),
    ("encoded display name", b"From: =?utf-8?q?D=C3=A9mo?= <demo@example.test>\r\n", ACCEPTED),
    ("UTF-8 display name (RFC 6532)", "From: Démo Üser <demo@example.test>\r\n".encode(), ACCEPTED),
    ("upper-case field name", b"FROM: demo@example.test\r\n", ACCEPTED),
    ("lower-case field name", b"from: demo@example.test\r\n", ACCEPTED),
    ("no space after the colon, own", b"From:demo@example.test\r\n", ACCEPTED),
    ("space before the colon, own", b"From : demo@example.test\r\n", ACCEPTED),
    ("folded display name", b"From: Demo\r\n <demo@example.test>\r\n", ACCEPTED),
    ("angle address alone", b"From: <demo@example.test>\r\n", ACCEPTED),
    ("owned alias", b"From: demo.alias@example.test\r\n", ACCEPTED),
    ("plus address", b"From: demo+tag@example.test\r\n", ACCEPTED),
    ("own address as display name", b'From: "demo@example.test" <demo@example.test>\r\n', ACCEPTED),
    ("comment with a name", b"From: demo@example.test (Demo User)\r\n", ACCEPTED),
    ("handle in a comment", b"From: Demo (@demo) <demo@example.test>\r\n", ACCEPTED),
    ("periods in the display name", b"From: Dr. J. Demo <demo@example.test>\r\n", ACCEPTED),
    ("domain in another case", b"From: Demo <demo@Example.TEST>\r\n", ACCEPTED),
    ("quoted local part that needs no quotes", b'From: "demo"@example.test\r\n', ACCEPTED),
    (
        "two own addresses with Sender",
        b"From: demo@example.test, demo.alias@example.test\r\nSender: demo@example.test\r\n",
        ACCEPTED,
    ),
    ("own Sender", b"From: demo.alias@example.test\r\nSender: demo@example.test\r\n", ACCEPTED),
    (
        "own resent block",
        b"From: demo@example.test\r\nResent-From: demo.alias@example.test\r\n"
        b"Resent-Sender: demo@example.test\r\n",
        ACCEPTED,
    ),
]
