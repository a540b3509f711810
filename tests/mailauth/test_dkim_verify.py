"""DKIM verification (RFC 6376, RFC 8463) through our resolver against a real DNS server on loopback: the
RFC 8463 sample message (dkimpy's copy, tests/mailauth/data/dkimpy, with dkimpy's licence) signed with
Ed25519 and RSA; tampering, missing and malformed keys, DNS failures, rsa-sha1 and short keys (RFC 8301)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.mailauth import dkim_verify
from postoffice.mailauth.dkim_verify import DkimVerifier, verify_signatures
from postoffice.net.dns import DnsResolver
from tests.support.dns_server import DnsServer, Zones
from tests.support.mail import run_bounded

DATA = Path(__file__).parent / "data" / "dkimpy"
SAMPLE = (DATA / "rfc6376.signed.msg").read_bytes()
ED25519_KEY = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
RSA_KEY = (DATA / "test.txt").read_text().strip()
MESSAGE = b"From: Ann <ann@signer.example>\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nHello Bob.\r\n"


def txt(text: str) -> str:
    """A TXT record's rdata text: the value in quoted strings of at most 200 characters."""
    return " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200))


def private_pem(bits: int) -> tuple[bytes, str]:
    if bits >= 1024:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:  # cryptography makes no keys this short any more; OpenSSL still does
        made = subprocess.run(["openssl", "genrsa", str(bits)], capture_output=True, check=True).stdout
        loaded = serialization.load_pem_private_key(made, password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        key = loaded
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    return pem, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"


ZONES = Zones(
    [
        ("brisbane._domainkey.football.example.com.", "TXT", txt(ED25519_KEY)),
        ("test._domainkey.football.example.com.", "TXT", txt(RSA_KEY)),
        ("garbled._domainkey.signer.example.", "TXT", txt("v=DKIM1; k=rsa; p=bm90IGEga2V5")),
    ]
)
PEM_2048, KEY_2048 = private_pem(2048)
PEM_512, KEY_512 = private_pem(512)
ZONES.add("good._domainkey.signer.example.", "TXT", txt(KEY_2048))
ZONES.add("short._domainkey.signer.example.", "TXT", txt(KEY_512))


@pytest.fixture(scope="module")
def resolver() -> Iterator[DnsResolver]:
    with DnsServer(ZONES) as server:
        yield DnsResolver(["127.0.0.1"], port=server.port, timeout=1, lifetime=2)


def sign(selector: str, pem: bytes, message: bytes = MESSAGE, algorithm: bytes = b"rsa-sha256") -> bytes:
    field = dkim.sign(message, selector.encode(), b"signer.example", pem, signature_algorithm=algorithm)
    return bytes(field) + message


def test_the_rfc_8463_sample_passes_with_both_its_signatures(resolver: DnsResolver) -> None:
    results = verify_signatures(SAMPLE, resolver)
    assert [(r.result, r.domain, r.selector, r.algorithm) for r in results] == [
        ("pass", "football.example.com", "brisbane", "ed25519-sha256"),
        ("pass", "football.example.com", "test", "rsa-sha256"),
    ]
    assert results[0].signature_start == "9/dsDChY0YMT"


def test_a_changed_body_fails_and_a_changed_header_fails(resolver: DnsResolver) -> None:
    body = SAMPLE.replace(b"We lost the game.", b"We won the game.")
    assert [r.result for r in verify_signatures(body, resolver)] == ["fail", "fail"]
    assert verify_signatures(body, resolver)[0].reason == "body hash did not verify"
    header = SAMPLE.replace(b"Subject: Is dinner ready?", b"Subject: Is lunch ready?")
    results = verify_signatures(header, resolver)
    assert [r.result for r in results] == ["fail", "fail"]
    assert results[1].reason == "signature did not verify"


def test_our_own_rsa_2048_signature_passes(resolver: DnsResolver) -> None:
    (result,) = verify_signatures(sign("good", PEM_2048), resolver)
    assert (result.result, result.domain, result.selector) == ("pass", "signer.example", "good")


def test_rsa_sha1_and_short_keys_are_not_accepted(resolver: DnsResolver) -> None:
    (sha1,) = verify_signatures(sign("good", PEM_2048, algorithm=b"rsa-sha1"), resolver)
    assert (sha1.result, sha1.reason) == ("policy", "rsa-sha1 is not accepted (RFC 8301)")
    (short,) = verify_signatures(sign("short", PEM_512), resolver)
    assert short.result == "policy"
    assert "1024" in short.reason


def test_a_missing_or_garbled_key_is_a_permanent_error(resolver: DnsResolver) -> None:
    (missing,) = verify_signatures(sign("absent", PEM_2048), resolver)
    assert missing.result == "permerror"
    assert "no key" in missing.reason
    (garbled,) = verify_signatures(sign("garbled", PEM_2048), resolver)
    assert garbled.result == "permerror"
    assert garbled.reason.startswith("bad key")


def test_a_malformed_signature_is_a_permanent_error(resolver: DnsResolver) -> None:
    signed = sign("good", PEM_2048)
    broken = signed.replace(b" b=", b" x=", 1)
    (result,) = verify_signatures(broken, resolver)
    assert result.result == "permerror"
    assert result.reason.startswith("bad signature")


def test_dns_that_does_not_answer_is_a_temporary_error() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        resolver = DnsResolver(["127.0.0.1"], port=silent.getsockname()[1], timeout=0.2, lifetime=0.4)
        (result,) = verify_signatures(sign("good", PEM_2048), resolver)
    finally:
        silent.close()
    assert result.result == "temperror"
    assert "timed out" in result.reason


def test_the_verifier_runs_in_its_threads_and_skips_unsigned_mail(resolver: DnsResolver) -> None:
    verifier = DkimVerifier(resolver, threads=2)
    try:
        assert run_bounded(verifier.verify(MESSAGE)) == []
        results = run_bounded(verifier.verify(SAMPLE))
        assert [r.result for r in results] == ["pass", "pass"]
    finally:
        verifier.close()


def test_the_worker_process_verifies_and_a_new_one_replaces_it_when_it_dies(resolver: DnsResolver) -> None:
    """dkim_processes: the messages go to a worker process through its socket pair and come back with the
    same results as in this process; a worker killed between messages is replaced at the next one."""
    verifier = DkimVerifier(resolver, threads=2, processes=1)

    async def scenario() -> tuple[list[list[str]], int, int]:
        pool = verifier._workers
        assert pool is not None
        first = await verifier.verify(SAMPLE)
        tampered = await verifier.verify(SAMPLE.replace(b"We lost the game.", b"We won the game."))
        (worker,) = pool._workers
        killed = worker.process.pid
        worker.process.kill()
        while not worker.connection.closed:  # noqa: ASYNC110 - the loop sees the end of the socket pair
            await asyncio.sleep(0.01)
        again = await verifier.verify(SAMPLE)
        (replacement,) = pool._workers
        assert worker.process.returncode is not None  # the dead one was reaped, not left a zombie
        return (
            [[r.result for r in first], [r.result for r in tampered], [r.result for r in again]],
            killed,
            (replacement.process.pid),
        )

    try:
        results, killed, replacement = run_bounded(scenario(), timeout=30)
    finally:
        verifier.close()
    assert results == [["pass", "pass"], ["fail", "fail"], ["pass", "pass"]]
    assert replacement != killed


def test_a_message_whose_worker_dies_is_verified_once_more_by_a_new_one() -> None:
    """A worker that ends with a message in hand: the message goes to a new worker (here the key lookup
    meets a DNS server that never answers, so the kill happens while the first worker waits on it)."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.setblocking(False)
    resolver = DnsResolver(["127.0.0.1"], port=silent.getsockname()[1], timeout=1.5, lifetime=1.5)
    verifier = DkimVerifier(resolver, threads=2, processes=1)

    async def scenario() -> tuple[list[str], int, int]:
        pool = verifier._workers
        assert pool is not None
        task = asyncio.ensure_future(verifier.verify(sign("good", PEM_2048)))
        # the worker has the message once its key lookup reaches the DNS server
        await asyncio.get_running_loop().sock_recv(silent, 4096)
        first = pool._workers[0]
        first.process.kill()
        results = await task
        return [r.result for r in results], first.process.pid, pool._workers[-1].process.pid

    try:
        results, first, second = run_bounded(scenario(), timeout=30)
    finally:
        verifier.close()
        silent.close()
    assert results == ["temperror"]  # the second worker asked the silent server too, and said so
    assert first != second


def test_no_worker_process_outlives_the_server_process(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a server process killed with SIGKILL takes its DKIM workers with it."""
    script = tmp_path / "server.py"
    script.write_text(
        "import asyncio, sys\n"
        "from postoffice.mailauth.dkim_verify import DkimVerifier\n"
        "from postoffice.net.dns import DnsResolver\n"
        "async def main():\n"
        "    resolver = DnsResolver(['127.0.0.1'], port=9, timeout=0.1, lifetime=0.1)\n"
        "    verifier = DkimVerifier(resolver, processes=2)\n"
        "    await verifier.verify(sys.stdin.buffer.read())\n"
        "    print(' '.join(str(w.process.pid) for w in verifier._workers._workers), flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    server = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False
    )
    try:
        assert server.stdin is not None
        assert server.stdout is not None
        server.stdin.write(sign("good", PEM_2048))
        server.stdin.close()
        workers = [int(pid) for pid in server.stdout.readline().split()]
        assert len(workers) == 2
        assert all(_running(pid) for pid in workers)
    finally:
        server.kill()
        server.wait()
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.02)  # polling for the kernel's SIGKILL to land, bounded
    assert not any(_running(pid) for pid in workers)


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"DKIM-Signature: v=1; a=rsa-sha256; d=signer.example; s=good; h=from; bh=AAAA; b=BBBB\r\n",
                b"DKIM-Signature: garbage\r\n",
                b"DKIM-Signature: v=1; a=ed25519-sha256; d=\xff\xfe; s=; b=\r\n",
                b"From: a@signer.example\r\n",
                b"\r\n",
                b"body\r\n",
            ]
        ),
        max_size=8,
    ),
    st.binary(max_size=200),
)
def test_any_message_gives_results_never_an_exception(parts: list[bytes], tail: bytes) -> None:
    resolver = DnsResolver(["127.0.0.1"], port=9, timeout=0.05, lifetime=0.05)
    results = verify_signatures(b"".join(parts) + tail, resolver)
    assert all(r.result in ("pass", "fail", "policy", "permerror", "temperror") for r in results)


@given(
    st.lists(
        st.sampled_from([b"From: a@b", b"Subject: x", b" folded", b"\tmore", b"", b"body", b"a\rb"]),
        max_size=12,
    ),
    st.sampled_from([b"\r\n", b"\n"]),
)
def test_the_quicker_message_split_gives_what_dkimpys_gives(lines: list[bytes], newline: bytes) -> None:
    """dkim_verify puts a split of the header section only in place of dkimpy's `rfc822_parse` (module
    notes): for every message, the same headers and body as dkimpy's own, or the same exception."""
    message = newline.join(lines) + newline
    try:
        expected: object = dkim_verify._dkimpy_rfc822_parse(message)
    except (dkim.MessageFormatError, IndexError) as exc:  # dkimpy's own, for a leading continuation line
        expected = type(exc)
    try:
        found: object = dkim_verify._rfc822_parse(message)
    except (dkim.MessageFormatError, IndexError) as exc:
        found = type(exc)
    assert found == expected
