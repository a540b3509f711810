"""Networking shared by every protocol: TLS contexts and certificates (`tls`), listeners and limits.

Protocol packages never open sockets or build SSL contexts themselves; they get connections from here.
"""
