"""POP3 (RFC 1939, RFC 2449 CAPA and response codes, RFC 2595 STLS, RFC 5034 SASL): the sans-IO protocol core
(`postoffice.pop3.protocol`), the asyncio glue (`postoffice.pop3.server.serve_pop3`) and the maildrop locks
shared with POP2 (`postoffice.pop3.locks`).

Implementation notes (details in the module docstrings and docs/decisions/0009-pop3.md)
- The maildrop is the account's INBOX, snapshotted at login; unique-ids are "<UIDVALIDITY>.<UID>".
- Only QUIT in the TRANSACTION state removes mail, and "+OK" follows the durable store commit; any other end
  of a session (drop, autologout, shutdown, too many errors) removes nothing.
- Passwords are checked only by `postoffice.auth.Authenticator`; without TLS, USER/PASS and AUTH are refused
  unless `[auth] allow_plaintext_auth` is set.
- Not offered: APOP (needs plaintext-equivalent secrets on the server), UTF8 (RFC 6856), LANG, LOGIN-DELAY.

Nothing is imported here so that `postoffice.pop3.locks` stays cheap to import for POP2.
"""
