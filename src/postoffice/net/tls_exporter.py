"""The tls-exporter channel binding of a TLS 1.3 connection (RFC 9266): 32 octets of the TLS exporter
(RFC 8446 section 7.5) with the label "EXPORTER-Channel-Binding" and no context, for SCRAM-SHA-256-PLUS.

Python's ssl module does not expose the exporter (SSL_export_keying_material). This reads it through ctypes
from the OpenSSL that the `_ssl` extension itself uses (symbols looked up through the extension's handle, so
the same library), on the `SSL *` of an `ssl.SSLObject` or `ssl.SSLSocket`: the pointer is the second field
after the object header of CPython's `_ssl._SSLSocket` (Modules/_ssl.c, the same from 3.8 to 3.13).

Because that is a layout assumption, it is checked on every use before anything is read through it:
- a CPython release build (no debug header, not free-threaded) between 3.8 and 3.13;
- `SSL_version` of the pointer must give TLS 1.3 (0x0304) while Python's `version()` says "TLSv1.3", and
  `SSL_get_fd`-free checks only: nothing is written through the pointer;
- any failure (another layout, another library, TLS 1.2) gives None: SCRAM-SHA-256-PLUS is then simply not
  offered on that connection, and SCRAM-SHA-256 still is. Never an exception.
TLS 1.2 is refused on purpose: RFC 9266 allows tls-exporter there only with the extended master secret,
which the ssl module cannot tell.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import ssl
import sys
import sysconfig
from typing import Any

log = logging.getLogger("postoffice.net")

LABEL = b"EXPORTER-Channel-Binding"
LENGTH = 32
_TLS1_3_VERSION = 0x0304


@functools.cache
def _library() -> Any:
    """libssl's functions, through the `_ssl` extension's own handle; None when they cannot be had."""
    if (
        sys.implementation.name != "cpython"
        or hasattr(sys, "gettotalrefcount")  # a debug build: a larger object header
        or sysconfig.get_config_var("Py_GIL_DISABLED")  # free-threaded: a larger object header too
        or not ((3, 8) <= sys.version_info[:2] <= (3, 13))
    ):
        return None
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)
        export = lib.SSL_export_keying_material
        export.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_int,
        ]
        export.restype = ctypes.c_int
        version = lib.SSL_version
        version.argtypes = [ctypes.c_void_p]
        version.restype = ctypes.c_int
    except (OSError, AttributeError, ImportError) as exc:
        log.info("tls-exporter channel binding unavailable: %s", exc)
        return None
    return lib


def _ssl_pointer(obj: ssl.SSLObject | ssl.SSLSocket) -> int | None:
    inner = getattr(obj, "_sslobj", None)
    if inner is None or type(inner).__name__ != "_SSLSocket":
        return None
    # PyObject_HEAD (refcount, type), then `PyObject *Socket`, then `SSL *ssl`
    offset = 2 * ctypes.sizeof(ctypes.c_void_p) + ctypes.sizeof(ctypes.c_void_p)
    pointer = ctypes.c_void_p.from_address(id(inner) + offset).value
    return pointer or None


def tls_exporter(obj: ssl.SSLObject | ssl.SSLSocket | None) -> bytes | None:
    """The tls-exporter channel binding data of the connection `obj` (see the module docstring), or None."""
    if obj is None:
        return None
    try:
        if obj.version() != "TLSv1.3":
            return None
        lib = _library()
        pointer = _ssl_pointer(obj) if lib is not None else None
        if pointer is None or lib.SSL_version(pointer) != _TLS1_3_VERSION:
            return None
        out = ctypes.create_string_buffer(LENGTH)
        if lib.SSL_export_keying_material(pointer, out, LENGTH, LABEL, len(LABEL), None, 0, 0) != 1:
            return None
        return out.raw
    except Exception as exc:  # never let a binding failure break a connection
        log.info("tls-exporter channel binding failed: %s", exc)
        return None
