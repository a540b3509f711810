"""Webmail: HTTPS (443) with HTTP (80) redirecting to it (docs/decisions/0046).

- `service`: the registration (ports, settings, the factory that serves a listener).
- `server`: uvicorn's HTTP/1.1 protocol on sockets the listener layer bound, with connection caps and a
  request-head deadline.
- `app`: the Starlette application: login, pages rendered on the server (Jinja2), security headers, CSRF.
- `sessions`: web sessions kept in the store; cookies.
- `mailview`: what the pages show, read from the store API (no IMAP in between).
- `i18n`: translations (gettext catalogs in `locale/`, read with Babel) and locale-aware formatting.
"""
