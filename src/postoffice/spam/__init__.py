"""Spam filtering at delivery (issue 15): rspamd over its HTTP protocol as the filter (`rspamd`, `stage`), its
`[spam]` settings (`settings`). docs/decisions/0086.
"""
