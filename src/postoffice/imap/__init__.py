"""IMAP server (RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1 and extensions).

Modules: `parser` (client commands, sans-IO), `mutf7` (modified UTF-7 mailbox names), `sequence` (sequence
sets); the protocol core, the command families and the glue live beside them.
"""
