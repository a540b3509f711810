"""ManageSieve (RFC 5804): how mail programs and the webmail's peers store an account's Sieve scripts, on port
4190 (STARTTLS). `protocol` is the sans-IO core, `server` the glue to the connection, the Authenticator and
the store, `service` its registration (docs/decisions/0083).
"""
