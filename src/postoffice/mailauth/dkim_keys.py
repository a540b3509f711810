"""DKIM signing keys (docs/decisions/0056): how a domain's keys are made, named and published, and which of
them sign.

Implementation notes
- A domain signs with two keys at a time, one Ed25519 (RFC 8463) and one RSA-2048 (RFC 6376 section 3.3.3;
  RFC 8301 section 3.2 asks for at least 2048 bits from signers): a "pair", made together and moved through
  the states together. Verifiers that know Ed25519 check both; the others see the RSA one (RFC 8463
  section 1).
- States (store.DKIM_KEY_STATES): pending (published, not signing: a rotation waits for DNS), active
  (signs), retiring (still published, no longer signs: mail signed before the switch may still be in a
  queue, ours or another's), removed (not published; the private key is deleted, the selector never used
  again). `published` says which are in DNS; `signing_keys` which sign.
- Selectors: `po` + the year and month the pair was made + `r` (RSA) or `e` (Ed25519): po202607r and
  po202607e; a second pair made in the same month of the same domain gets a number: po202607r2. The
  letters say the algorithm to a person reading the zone, the date how old the key is.
- A retiring key stays published for at least `retiring_period`: the queue's `max_age` (the longest our own
  queue keeps retrying a message signed before the switch) plus RETIRE_MARGIN for receivers that verify late
  (their own queues, mail forwarded on). `postoffice dkim retire` removes it no earlier, unless forced.
- Keys are made with `cryptography` (OpenSSL); private keys are PEM (PKCS #8) strings kept in the store
  and never logged. A DKIM TXT record of an RSA key is longer than one DNS character-string (255 octets,
  RFC 1035 section 3.3): `txt_strings` splits it; verifiers join the strings (RFC 6376 section 3.6.2.2).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from postoffice.store import DkimKey

#: The algorithms of a pair, in the order their signatures stand in a signed message (RSA on top: a verifier
#: that reads only the first signature, or stops at an algorithm it does not know, finds one it can check).
ALGORITHMS: tuple[str, ...] = ("rsa", "ed25519")
#: The a= tag of each (RFC 6376 section 3.5, RFC 8463 section 3).
SIGNATURE_ALGORITHM = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
RSA_BITS = 2048
#: How long a retiring key stays published beyond the queue's max_age.
RETIRE_MARGIN = 2 * 86400.0
#: The states whose keys are in DNS.
PUBLISHED_STATES = ("pending", "active", "retiring")
#: Longest DNS character-string (RFC 1035 section 3.3).
TXT_STRING_OCTETS = 255


def new_key(algorithm: str) -> tuple[str, str]:
    """A new private key (PEM, PKCS #8) and its public key as the p= of a DKIM record: the raw 32 octets for
    Ed25519 (RFC 8463 section 4.2), the DER SubjectPublicKeyInfo for RSA (RFC 6376 section 3.6.1), base64.
    Blocking (RSA: about 0.1 s)."""
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    elif algorithm == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes_raw()
    else:
        raise ValueError(f"not a DKIM key algorithm: {algorithm!r}")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode("ascii"), base64.b64encode(public).decode("ascii")


def load_private_key(key: DkimKey) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """The key's private key as a `cryptography` object; ValueError when it is not what its algorithm says
    (or removed). Blocking (an RSA key is checked as it is loaded: milliseconds)."""
    if not key.private_key:
        raise ValueError(f"the DKIM key {key.selector} of {key.domain} has no private key ({key.state})")
    loaded = serialization.load_pem_private_key(key.private_key.encode("ascii"), password=None)
    if key.algorithm == "rsa" and isinstance(loaded, rsa.RSAPrivateKey):
        return loaded
    if key.algorithm == "ed25519" and isinstance(loaded, ed25519.Ed25519PrivateKey):
        return loaded
    raise ValueError(f"the DKIM key {key.selector} of {key.domain} is not an {key.algorithm} key")


def selectors(taken: Iterable[str], when: float) -> dict[str, str]:
    """The selectors of a new pair made at `when` (algorithm -> selector), none of them in `taken` (every
    selector the domain has had)."""
    used = set(taken)
    base = "po" + time.strftime("%Y%m", time.gmtime(when))
    number = 1
    while True:
        suffix = "" if number == 1 else str(number)
        chosen = {algorithm: f"{base}{algorithm[0]}{suffix}" for algorithm in ALGORITHMS}
        if not used & set(chosen.values()):
            return chosen
        number += 1


def new_pair(domain: str, existing: Sequence[DkimKey], *, state: str, now: float) -> list[DkimKey]:
    """A new pair of keys for `domain` in `state` (pending or active), not stored yet. Blocking."""
    names = selectors((key.selector for key in existing), now)
    pair = []
    for algorithm in ALGORITHMS:
        private, public = new_key(algorithm)
        pair.append(DkimKey(0, domain, names[algorithm], algorithm, public, private, state, now, now))
    return pair


def published(keys: Iterable[DkimKey]) -> list[DkimKey]:
    """The keys whose records are in DNS (pending, active, retiring), in the order given."""
    return [key for key in keys if key.state in PUBLISHED_STATES]


def signing_keys(keys: Iterable[DkimKey]) -> list[DkimKey]:
    """The active keys, RSA first (ALGORITHMS: the order of the signatures in a message)."""
    active = [key for key in keys if key.state == "active"]
    return sorted(active, key=lambda key: ALGORITHMS.index(key.algorithm))


def retiring_period(max_age: float) -> float:
    """How long a key stays published once it stops signing (module notes), for a queue `max_age`."""
    return max_age + RETIRE_MARGIN


def removable_at(key: DkimKey, max_age: float) -> float:
    """When a retiring key may be removed from DNS and the store."""
    return key.changed + retiring_period(max_age)


def record_name(key: DkimKey) -> str:
    """The name of the key's record, absolute (RFC 6376 section 3.6.2.1)."""
    return f"{key.selector}._domainkey.{key.domain}."


def record_value(key: DkimKey) -> str:
    """The text of the key's TXT record (RFC 6376 section 3.6.1; k=ed25519: RFC 8463 section 4.2)."""
    return f"v=DKIM1; k={key.algorithm}; p={key.public_key}"


def txt_strings(value: str) -> list[str]:
    """`value` as the character-strings of one TXT record: at most 255 octets each (module notes)."""
    raw = value.encode("utf-8")
    return [
        raw[i : i + TXT_STRING_OCTETS].decode("utf-8", "replace")
        for i in range(0, len(raw), TXT_STRING_OCTETS)
    ] or [""]


def zone_line(key: DkimKey) -> str:
    """`SELECTOR._domainkey.DOMAIN. IN TXT "v=DKIM1; k=...; p=..."` (the strings of a long record side by
    side, as zone files write them)."""
    quoted = " ".join(f'"{part}"' for part in txt_strings(record_value(key)))
    return f"{record_name(key)} IN TXT {quoted}"
