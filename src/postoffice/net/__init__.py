"""Networking shared by every protocol: TLS contexts and certificates (`tls`), listeners and limits
(`listener`), and for the line protocols (SMTP, POP3, POP2) their sans-IO skeleton (`lineproto`) and their
one connection loop (`driver`).

Protocol packages never open sockets or build SSL contexts themselves; they get connections from here.
"""
