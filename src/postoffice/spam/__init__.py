"""Spam filtering (issue 15): rspamd over its HTTP protocol as the filter (`rspamd`, `stage`;
docs/decisions/0086); for every server the built-in checks (docs/decisions/0089): DNS blocklists (`dnsbl`)
and greylisting (`greylist`) asked by port 25 sessions (`screen`), and a verdict from the authentication
results without rspamd (`builtin`); the `[spam]` settings (`settings`).
"""
