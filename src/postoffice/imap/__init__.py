"""IMAP server (RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1 and extensions).

Modules: `parser` (client commands, sans-IO: `commands`, `grammar`, `reader`), `protocol` (the core without
I/O, docs/decisions/0038), `state` (the session state the commands see), `access` (`MailAccess`, the store
calls of IMAP), `commands_mailbox` and `commands_message` (the command families), `mailbox_view`, `fetch`,
`search`, `wire`, `mutf7` (modified UTF-7 mailbox names), `sequence` (sequence sets), `settings`; `session`
is the connection glue.
"""
