"""Postoffice: a complete mail server for one domain owner, in one process."""

__version__ = "0.1.0"
