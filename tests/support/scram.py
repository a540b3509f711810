"""The client side of SCRAM-SHA-256-PLUS with tls-exporter binding, from RFC 5802's formulas, for tests:
scramp (the independent client the tests use otherwise) refuses tls-exporter."""

from __future__ import annotations

import base64
import hashlib
import hmac

PLUS_HEADER = b"p=tls-exporter,,"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def plus_client_final(password: str, binding: bytes, bare: str, server_first: str) -> tuple[str, str]:
    """(the client-final message, the server-final message a server that knows the password must send) for
    the client-first message PLUS_HEADER + `bare` answered with `server_first`."""
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    without_proof = f"c={b64(PLUS_HEADER + binding)},r={fields['r']}"
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    return f"{without_proof},p={b64(proof)}", f"v={b64(hmac.digest(server_key, auth_message, 'sha256'))}"
