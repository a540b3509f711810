"""Sender authentication on port 25 (issue 13): SPF (RFC 7208), DKIM (RFC 6376, RFC 8463), DMARC (RFC 9989),
iprev (RFC 8601 section 3), the Authentication-Results header (RFC 8601); DKIM signing of outbound mail.

The order of the checks and what each decides: docs/decisions/0054-inbound-authentication.md; signing and its
keys: docs/decisions/0056-dkim-signing-and-keys.md.
"""
