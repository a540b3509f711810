"""DKIM verification (RFC 6376) of every signature of a received message, RSA and Ed25519 (RFC 8463), with
dkimpy doing the cryptography and the canonicalisation, and our resolver doing the DNS.

Implementation notes
- Each DKIM-Signature field is verified on its own (RFC 6376 section 6.1: a verifier may check any or all;
  DMARC needs the result of each signing domain), up to MAX_SIGNATURES; the message is read once and parsed
  by dkimpy once per message. dkimpy is blocking: it runs in a small thread pool, never on the event loop.
- The key is fetched with `DnsResolver.query_sync` (the server's resolver settings and its TTL cache): a
  missing key (NXDOMAIN, no TXT) is `permerror` (RFC 6376 section 6.1.2: PERMFAIL, "no key for
  signature"); a DNS failure is `temperror` (TEMPFAIL). dkimpy reports both as "not verified": the lookup
  function records which it was.
- Results, in RFC 8601 section 2.7.1's terms: `pass`; `fail` when the body hash or the signature does not
  verify; `policy` when the signature verifies as far as dkimpy goes but is not acceptable here: rsa-sha1
  (RFC 8301 section 3.1: verifiers MUST NOT consider it valid) or an RSA key shorter than 1024 bits (RFC
  8301 section 3.2); `permerror` for a malformed signature or key, a missing key; `temperror` for DNS.
  `neutral` is not used. No signature at all is reported by the caller as `dkim=none`.
- Where: a worker process by default ([mailauth] dkim_processes): the hashing and the RSA arithmetic then run
  on another core instead of under the server's GIL (bench/smtp_load.py --auth measured it). The worker is
  a fresh interpreter (never a fork of the threaded server), makes its own resolver from the same settings,
  and asks Linux to kill it when the server process ends however it ends (PR_SET_PDEATHSIG), so none
  outlives it.
- The hand-off is one socket pair per worker, read by the server's event loop (`WorkerPool`): a frame with
  the message out, a frame of JSON results back. Python's ProcessPoolExecutor did the same job with a
  manager and a feeder thread and pickling, about 0.3 ms of the server's GIL per message, which was the
  largest part of what the checks cost the server (docs/decisions/0060).
- `header.b` in the Authentication-Results field is the first 12 characters of the signature's b= (RFC 6008),
  so that several signatures of one domain can be told apart.
- The RSA check itself is OpenSSL's (`cryptography`), put in place of dkimpy's pure-Python one
  (`dkim.RSASSA_PKCS1_v1_5_verify`, the name dkimpy's verifier calls) when this module is imported: the
  same RSASSA-PKCS1-v1_5 check of the digest dkimpy computed, about 0.05 ms instead of 0.5 ms (its
  integer-to-bytes conversion is pure Python); dkimpy still parses, canonicalises and hashes.
- Two more of dkimpy's module functions are wrapped for speed, each falling back to dkimpy's own: its
  message split (`rfc822_parse` splits the whole message into lines with a regular expression to join the
  body again; for a message whose every LF follows a CR, as SMTP gives, only the header section is split)
  and its key parse (`load_pk_from_dns` parses the key record's ASN.1 in pure Python for every signature;
  the parse is kept per (name, record) in a small LRU, the record itself still comes from DNS each time,
  through the TTL cache).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import functools
import json
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import dkim
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from postoffice.net.dns import DnsResolver, DnsTemporaryFailure, NoSuchDomain


def _openssl_rsa_verify(digest: Any, signature: bytes, public_key: dict[str, int]) -> bool:
    """dkimpy's `RSASSA_PKCS1_v1_5_verify(hash, signature, public_key)`, by OpenSSL: `digest` is the hashlib
    object of the signed data, `public_key` dkimpy's {"modulus", "publicExponent"}; True when it verifies."""
    algorithm = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}.get(digest.name)  # noqa: S303 - RFC 8301 refuses it later
    if algorithm is None:
        return False
    try:
        key = rsa.RSAPublicNumbers(public_key["publicExponent"], public_key["modulus"]).public_key()
        key.verify(signature, digest.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))
    except (InvalidSignature, ValueError, TypeError, KeyError, OverflowError):
        return False
    return True


_dkimpy_rfc822_parse = dkim.rfc822_parse


def _rfc822_parse(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """dkimpy's `rfc822_parse`, splitting only the header section when every LF follows a CR."""
    end = message.find(b"\r\n\r\n")
    if end <= 0 or message.startswith(b"\r\n") or message.count(b"\n") != message.count(b"\r\n"):
        return _dkimpy_rfc822_parse(message)  # type: ignore[no-any-return]
    headers, _empty = _dkimpy_rfc822_parse(message[: end + 4])
    return headers, message[end + 4 :]


@functools.lru_cache(maxsize=1024)
def _evaluate_pk(name: bytes, record: bytes) -> Any:
    return dkim.evaluate_pk(name, record)


def _load_pk_from_dns(name: bytes, dnsfunc: Any = dkim.get_txt, timeout: int = 5) -> Any:
    """dkimpy's `load_pk_from_dns`, with the parsed key kept per (name, record)."""
    record = dnsfunc(name, timeout=timeout)
    if not isinstance(record, bytes):
        return dkim.evaluate_pk(name, record)  # None or odd: dkimpy says what that means
    return _evaluate_pk(name, record)


dkim.RSASSA_PKCS1_v1_5_verify = _openssl_rsa_verify  # module notes: the names dkimpy's verify calls
dkim.rfc822_parse = _rfc822_parse
dkim.load_pk_from_dns = _load_pk_from_dns

log = logging.getLogger("postoffice.mailauth")
#: dkimpy's own log lines (every missing key is an "error" there): kept quiet, our results say it all.
DKIMPY_LOG = logging.getLogger("postoffice.mailauth.dkimpy")
DKIMPY_LOG.setLevel(logging.CRITICAL)

#: Signatures verified per message at most (each costs a DNS lookup and a hash of the body).
MAX_SIGNATURES = 10
#: Shortest RSA key accepted (RFC 8301 section 3.2).
MIN_RSA_BITS = 1024


@dataclass(frozen=True)
class DkimResult:
    result: str  # pass | fail | policy | permerror | temperror
    domain: str  # d=, lowercase ("" when the signature could not be read)
    selector: str  # s=
    algorithm: str  # a=
    signature_start: str  # the first characters of b= (RFC 6008 header.b)
    reason: str  # why, for the log and the A-R comment ("" for pass)


class KeyLookup:
    """dkimpy's `dnsfunc`: TXT records through our resolver, remembering a temporary failure (DKIM and ARC,
    mailauth/arc.py)."""

    def __init__(self, resolver: DnsResolver) -> None:
        self.resolver = resolver
        self.temporary = ""
        self.key: bytes | None = None  # the key record found (None: none was)
        self.name = ""

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        self.name = text
        try:
            answer = self.resolver.query_sync(text, "TXT")
        except NoSuchDomain:
            return None
        except DnsTemporaryFailure as exc:
            self.temporary = exc.text
            raise dkim.DnsTimeoutError(exc.text) from None
        except ValueError:  # not a name DNS can be asked about
            return None
        if answer is None:
            return None
        for record in answer:
            self.key = b"".join(record.strings)
            return self.key
        return None


def signature_tag(signature: bytes, name: bytes) -> str:
    match = re.search(rb"(?:^|;)\s*" + name + rb"\s*=\s*([^;]*)", signature)
    if match is None:
        return ""
    return re.sub(rb"\s+", b"", match.group(1)).decode("ascii", "replace")


def verify_signatures(message: bytes, resolver: DnsResolver) -> list[DkimResult]:
    """Every DKIM signature of `message` (blocking: DNS and hashing); [] when it has none."""
    try:
        verifier = dkim.DKIM(message, logger=DKIMPY_LOG, minkey=MIN_RSA_BITS, timeout=5)
    except Exception as exc:  # dkimpy could not split the message into header fields and body
        log.info("DKIM: the message cannot be read for verification: %s", exc)
        return []
    fields = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    results = []
    for index, value in enumerate(fields[:MAX_SIGNATURES]):
        results.append(_verify_one(verifier, index, value, resolver))
    return results


def _verify_one(verifier: dkim.DKIM, index: int, value: bytes, resolver: DnsResolver) -> DkimResult:
    domain = signature_tag(value, b"d").lower()
    selector = signature_tag(value, b"s")
    algorithm = signature_tag(value, b"a").lower()
    start = signature_tag(value, b"b")[:12]

    def result(outcome: str, reason: str = "") -> DkimResult:
        return DkimResult(outcome, domain, selector, algorithm, start, reason)

    if algorithm == "rsa-sha1":
        return result("policy", "rsa-sha1 is not accepted (RFC 8301)")
    lookup = KeyLookup(resolver)
    try:
        verified = verifier.verify(idx=index, dnsfunc=lookup)
    except dkim.KeyFormatError as exc:
        text = str(exc)
        if "too small" in text:
            return result("policy", f"the key is shorter than {MIN_RSA_BITS} bits (RFC 8301)")
        return result("permerror", f"bad key: {text}")
    except dkim.ValidationError as exc:
        text = str(exc)
        if "body hash mismatch" in text:
            return result("fail", "body hash did not verify")
        return result("permerror", f"bad signature: {text}")
    except dkim.DKIMException as exc:
        return result("permerror", f"bad signature: {exc}")
    except Exception as exc:  # a dkimpy bug on odd input must not lose the message
        log.warning("DKIM verification of a %s signature failed unexpectedly: %s", domain or "?", exc)
        return result("permerror", "the signature could not be verified")
    if verified:
        return result("pass")
    if lookup.temporary:
        return result("temperror", f"key lookup: {lookup.temporary}")
    if lookup.key is None:
        return result("permerror", f"no key for the signature at {lookup.name or '?'}")
    try:  # dkimpy answers "not verified" for a malformed key too: tell the two apart
        dkim.evaluate_pk(lookup.name, lookup.key)
    except Exception as exc:
        return result("permerror", f"bad key: {exc}")
    return result("fail", "signature did not verify")


class DkimVerifier:
    """Verifies messages off the event loop (see the module notes): in `processes` worker processes when
    there are any (the hashing and RSA arithmetic then use another core instead of holding this process's
    GIL), else in a pool of `threads` threads. A worker process makes its own resolver with the same settings
    (and its own cache)."""

    def __init__(self, resolver: DnsResolver, *, threads: int = 4, processes: int = 0) -> None:
        self.resolver = resolver
        self._workers: WorkerPool | None = None
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        if processes > 0:
            self._workers = WorkerPool(processes, resolver.arguments, threads=threads)
        else:
            self._threads = concurrent.futures.ThreadPoolExecutor(
                max_workers=threads, thread_name_prefix="postoffice-dkim"
            )

    async def verify(self, message: bytes) -> Sequence[DkimResult]:
        if b"dkim-signature" not in message[: message.find(b"\r\n\r\n") + 1 or len(message)].lower():
            return []  # no signature: nothing to hand to a worker
        if self._workers is not None:
            return await self._workers.verify(message)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, verify_signatures, message, self.resolver)

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)


class WorkerGone(Exception):
    """A worker process ended (or could not be started) before it answered."""


#: A frame between the server and a worker: request id and payload length, then the payload.
_FRAME = struct.Struct("!II")
#: Seconds a worker is given to end after its connection is closed, before it is killed.
WORKER_EXIT_SECONDS = 5.0


class _WorkerConnection(asyncio.Protocol):
    """The server's end of one worker's socket pair: requests written, answers matched to them by id."""

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.closed = False
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= _FRAME.size:
            ident, length = _FRAME.unpack_from(buffer)
            end = _FRAME.size + length
            if len(buffer) < end:
                return
            payload = bytes(buffer[_FRAME.size : end])
            del buffer[:end]
            future = self.pending.pop(ident, None)
            if future is not None and not future.done():
                future.set_result(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(WorkerGone("the DKIM worker process ended"))


class _Worker:
    def __init__(self, process: subprocess.Popen[bytes], connection: _WorkerConnection) -> None:
        self.process = process
        self.connection = connection


class WorkerPool:
    """Worker processes verifying DKIM signatures, each reached through one socket pair read by the event
    loop (no threads of this process take part): a message goes out as one frame, its results come back as
    one, matched by a request id.

    - Started at the first message, from the running loop (so from the server's main thread, which
      PR_SET_PDEATHSIG ties the workers to), by `python -m postoffice.mailauth.dkim_worker`: a fresh
      interpreter, never a fork of the threaded server.
    - A message goes to the worker with the fewest in flight. Each worker verifies several at once in its
      own threads, so that one slow key lookup does not hold up the others.
    - A worker that ends is replaced at the next message; a message it had not answered is tried once more
      on another, then reported as a failed check (the caller's temperror)."""

    def __init__(
        self,
        processes: int,
        resolver_arguments: tuple[tuple[Sequence[str] | None], dict[str, float | int | bool]],
        *,
        threads: int = 4,
    ) -> None:
        self.processes = processes
        self.threads = max(1, threads)
        self.resolver_arguments = resolver_arguments
        self._workers: list[_Worker] = []
        self._starting: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the workers' connections belong to it
        self._next_id = 0
        self._closed = False

    async def verify(self, message: bytes) -> list[DkimResult]:
        try:
            return await self._ask(message)
        except WorkerGone:
            if self._closed:
                raise
            log.warning("DKIM: a worker process ended; the message is verified again by another")
            return await self._ask(message)

    async def _ask(self, message: bytes) -> list[DkimResult]:
        worker = await self._worker()
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        ident = self._next_id
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        connection = worker.connection
        if connection.transport is None:
            raise WorkerGone("the DKIM worker process is not connected")
        connection.pending[ident] = future
        connection.transport.write(_FRAME.pack(ident, len(message)) + message)
        try:
            payload = await future
        finally:
            connection.pending.pop(ident, None)
        answer = json.loads(payload)
        if not isinstance(answer, list):
            raise RuntimeError(f"the DKIM worker failed: {answer}")
        return [DkimResult(*(str(value) for value in row)) for row in answer]

    async def _worker(self) -> _Worker:
        if self._closed:
            raise WorkerGone("the DKIM verifier is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # another event loop (a test's): the old one's connections are useless
            self._end_all()
            self._loop, self._starting = loop, None
        live = [w for w in self._workers if not w.connection.closed]
        if len(live) < self.processes:
            if self._starting is None:
                self._starting = asyncio.Lock()
            async with self._starting:
                self._reap()
                while len([w for w in self._workers if not w.connection.closed]) < self.processes:
                    self._workers.append(await self._start())
            live = [w for w in self._workers if not w.connection.closed]
        return min(live, key=lambda w: len(w.connection.pending))

    async def _start(self) -> _Worker:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)  # this process's modules
            arguments = json.dumps([*self.resolver_arguments, self.threads])
            # a fork and exec, once per worker: not worth asyncio's child watcher (a thread per child)
            process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own interpreter and module
                [
                    sys.executable,
                    "-m",
                    "postoffice.mailauth.dkim_worker",
                    str(theirs.fileno()),
                    str(os.getpid()),
                    arguments,
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            ours.close()
            raise WorkerGone(f"a DKIM worker process could not be started: {exc}") from exc
        finally:
            theirs.close()
        _transport, connection = await loop.connect_accepted_socket(_WorkerConnection, ours)
        return _Worker(process, connection)

    def _reap(self) -> None:
        """Forget the workers whose connection ended, and collect their exit status (no zombies)."""
        for worker in [w for w in self._workers if w.connection.closed]:
            self._workers.remove(worker)
            with contextlib.suppress(OSError):
                worker.process.kill()  # it has ended or is ending: nothing is lost
            worker.process.wait()

    def close(self) -> None:
        self._closed = True
        self._end_all()

    def _end_all(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            if worker.connection.transport is not None:
                with contextlib.suppress(RuntimeError):  # its event loop is closed already
                    worker.connection.transport.close()
            with contextlib.suppress(OSError):
                worker.process.terminate()
        for worker in workers:
            _end(worker.process)


def _end(process: subprocess.Popen[bytes]) -> None:
    """Collect a worker's exit status once it has ended, killing it if it has not within
    WORKER_EXIT_SECONDS."""
    try:
        process.wait(timeout=WORKER_EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def serve_worker(argv: Sequence[str]) -> None:
    """A worker process's life (`python -m postoffice.mailauth.dkim_worker FD PARENT ARGUMENTS`): frames
    in, results out, until the server closes the socket pair or ends."""
    fd, parent = int(argv[0]), int(argv[1])
    _die_with(parent)
    (resolver_args, resolver_kwargs, threads) = json.loads(argv[2])
    resolver = DnsResolver(*resolver_args, **resolver_kwargs)
    channel = socket.socket(fileno=fd)
    reader = channel.makefile("rb")
    sending = threading.Lock()

    def answer(ident: int, message: bytes) -> None:
        try:
            rows: object = [
                [r.result, r.domain, r.selector, r.algorithm, r.signature_start, r.reason]
                for r in verify_signatures(message, resolver)
            ]
        except Exception as exc:  # verify_signatures keeps its own; this is the last guard
            rows = f"{type(exc).__name__}: {exc}"
        payload = json.dumps(rows).encode()
        with sending:
            channel.sendall(_FRAME.pack(ident, len(payload)) + payload)

    pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="dkim")
    while True:
        head = reader.read(_FRAME.size)
        if len(head) < _FRAME.size:
            break
        ident, length = _FRAME.unpack(head)
        message = reader.read(length)
        if len(message) < length:
            break
        pool.submit(answer, ident, message)
    os._exit(0)  # the server closed its end: nothing of this process is wanted any more


def _die_with(parent: int) -> None:
    """Ask Linux to end this worker when the server process ends, however it ends (kill -9 included:
    PR_SET_PDEATHSIG), so that no worker outlives it; and end now if it has ended already."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:
        os._exit(0)
