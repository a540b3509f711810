"""SCRAM-SHA-256 and -PLUS (RFC 5802, RFC 7677, RFC 9266), the server side (`postoffice.auth.scram`): the RFC
7677 example exchange octet for octet, an independent client (scramp), -PLUS with tls-exporter binding from
RFC 5802's formulas, wrong passwords, the channel-binding rules, malformed messages, and random input that
never raises."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scramp import ScramClient

from postoffice.auth.authenticator import Authenticator, AuthResult
from postoffice.auth.sasl import Challenge, NeedScramSecret, SaslFailure, SaslStep, ScramOutcome
from postoffice.auth.scram import (
    ITERATIONS,
    ScramMechanism,
    ScramSecret,
    derive_secret,
    stand_in_secret,
)
from postoffice.directory import operations, passwords
from postoffice.store import MailStore
from tests.auth.test_app_passwords_and_second_factor import turn_on_totp
from tests.auth.test_authenticator import CONFIG, PASSWORD, FakeSleep, password_hash, pop3_login, run, sleep
from tests.support.scram import PLUS_HEADER, plus_client_final

__all__ = ["password_hash", "sleep"]  # fixtures

RFC7677_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")


def test_the_rfc_7677_example_exchange() -> None:
    secret = derive_secret("pencil", RFC7677_SALT, 4096)
    server = ScramMechanism(server_nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    assert server.start(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO") == NeedScramSecret("user", "")
    first = server.with_secret(secret)
    assert first == Challenge(
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    final = server.step(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert final == Challenge(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    assert server.step(b"") == ScramOutcome("user", "", True)
    assert isinstance(server.step(b""), SaslFailure)  # over


def exchange(client: ScramClient, server: ScramMechanism, secret: ScramSecret) -> SaslStep:
    """Run an exchange between scramp's client and the mechanism; the mechanism's last step."""
    step = server.start(client.get_client_first().encode())
    assert isinstance(step, NeedScramSecret)
    step = server.with_secret(secret)
    assert isinstance(step, Challenge)
    client.set_server_first(step.data.decode())
    step = server.step(client.get_client_final().encode())
    if not isinstance(step, Challenge):
        return step
    client.set_server_final(step.data.decode())  # raises when the server's signature is wrong
    return server.step(b"")


def test_an_independent_client_logs_in_and_checks_the_server() -> None:
    secret = ScramSecret.decode(derive_secret("correct horse").encode())
    assert secret is not None
    assert secret.iterations == ITERATIONS
    client = ScramClient(["SCRAM-SHA-256"], "demo@example.test", "correct horse")
    assert exchange(client, ScramMechanism(), secret) == ScramOutcome("demo@example.test", "", True)


def test_a_wrong_password_is_a_failed_outcome_not_a_malformed_exchange() -> None:
    client = ScramClient(["SCRAM-SHA-256"], "demo@example.test", "wrong horse")
    outcome = exchange(client, ScramMechanism(), derive_secret("correct horse"))
    assert outcome == ScramOutcome("demo@example.test", "", False)
    stand_in = stand_in_secret(b"k" * 32, "nobody@example.test")
    client = ScramClient(["SCRAM-SHA-256"], "nobody@example.test", "anything")
    assert exchange(client, ScramMechanism(), stand_in) == ScramOutcome("nobody@example.test", "", False)
    # the same salt at every attempt for a name, another for another name
    assert stand_in_secret(b"k" * 32, "nobody@example.test").salt == stand_in.salt
    assert stand_in_secret(b"k" * 32, "other@example.test").salt != stand_in.salt


def plus_client(password: str, binding: bytes, server: ScramMechanism) -> SaslStep:
    """The client side of -PLUS (tests/support/scram.py) against `server`; the server's last step."""
    bare = "n=demo@example.test,r=clientnonce123"
    step = server.start(PLUS_HEADER + bare.encode())
    assert isinstance(step, NeedScramSecret)
    first = server.with_secret(derive_secret(PASSWORD_ON_SERVER, SALT, 4096))
    assert isinstance(first, Challenge)
    final, expected = plus_client_final(password, binding, bare, first.data.decode())
    step = server.step(final.encode())
    if not isinstance(step, Challenge):
        return step
    assert step.data.decode() == expected  # the server proves it knows the secret
    return server.step(b"")


PASSWORD_ON_SERVER = "correct horse"
SALT = b"0123456789abcdef"


def test_plus_binds_to_the_tls_exporter() -> None:
    binding = bytes(range(32))
    server = ScramMechanism(plus=True, channel_binding=binding)
    assert plus_client("correct horse", binding, server) == ScramOutcome("demo@example.test", "", True)
    wrong = ScramMechanism(plus=True, channel_binding=bytes(32))  # another connection's exporter
    assert isinstance(plus_client("correct horse", binding, wrong), SaslFailure)
    assert plus_client("wrong horse", binding, ScramMechanism(plus=True, channel_binding=binding)) == (
        ScramOutcome("demo@example.test", "", False)
    )


@pytest.mark.parametrize(
    ("client_first", "plus", "binding"),
    [
        (b"y,,n=u,r=abc", False, b"x" * 32),  # the client could bind and the server offers -PLUS: downgrade
        (b"p=tls-exporter,,n=u,r=abc", False, b"x" * 32),  # binding asked on the plain mechanism
        (b"p=tls-unique,,n=u,r=abc", True, b"x" * 32),  # another binding type
        (b"p=tls-exporter,,n=u,r=abc", True, None),  # no exporter on this connection
        (b"n,,n=u,r=abc", True, b"x" * 32),  # -PLUS without binding
        (b"n,,m=ext,n=u,r=abc", False, None),  # a mandatory extension
        (b"n,,n=a=b,r=abc", False, None),  # "=" not as =2C or =3D
        (b"n,,n=u,r=", False, None),
        (b"n,,n=u,r=a\x7fb", False, None),
        (b"n,x,n=u,r=abc", False, None),
        (b"n,,n=u", False, None),
        (b"\xff,,n=u,r=abc", False, None),
    ],
)
def test_malformed_or_refused_client_first_messages(
    client_first: bytes, plus: bool, binding: bytes | None
) -> None:
    assert isinstance(ScramMechanism(plus=plus, channel_binding=binding).start(client_first), SaslFailure)


def test_names_are_unescaped_and_authzid_kept() -> None:
    step = ScramMechanism().start(b"n,a=admin=40x,n=a=2Cb=3Dc,r=abc")
    assert isinstance(step, SaslFailure)  # "=40" is not an escape
    assert ScramMechanism().start(b"n,a=boss,n=a=2Cb=3Dc,r=abc") == NeedScramSecret("a,b=c", "boss")
    assert isinstance(ScramMechanism().start(b"n,,n=x=3=2CD,r=abc"), SaslFailure)  # "=3=" is no escape
    assert ScramMechanism().start(b"n,,n=x=3D=2CD,r=abc") == NeedScramSecret("x=,D", "")
    assert ScramMechanism().start(b"y,,n=u,r=abc") == NeedScramSecret("u", "")  # "y" without binding: fine


def test_client_final_must_carry_the_nonce_and_binding() -> None:
    secret = derive_secret("pw")
    for final in (
        b"c=biws,r=wrong,p=" + base64.b64encode(bytes(32)),
        b"c=eSws,r={nonce},p=" + base64.b64encode(bytes(32)),  # "y,," is not what the client sent first
        b"c=biws,r={nonce},p=!!!",
        b"c=biws,r={nonce}",
        b"r={nonce},c=biws,p=" + base64.b64encode(bytes(32)),
    ):
        server = ScramMechanism()
        server.start(b"n,,n=u,r=abc")
        first = server.with_secret(secret)
        assert isinstance(first, Challenge)
        nonce = first.data.split(b",")[0][2:]
        assert isinstance(server.step(final.replace(b"{nonce}", nonce)), SaslFailure), final


def test_secrets_round_trip_and_bad_ones_are_refused() -> None:
    secret = derive_secret("pw", b"salt", 5000)
    assert ScramSecret.decode(secret.encode()) == secret
    for text in ("", "x", "0$c2FsdA==$AA==$AA==", "4096$!!$AA==$AA==", secret.encode() + "$more"):
        assert ScramSecret.decode(text) is None


@given(st.lists(st.binary(max_size=300), max_size=5), st.booleans())
def test_random_input_never_raises(messages: list[bytes], plus: bool) -> None:
    server = ScramMechanism(plus=plus, channel_binding=b"b" * 32 if plus else None)
    step: SaslStep = server.start(messages[0] if messages else None)
    for message in messages[1:]:
        if isinstance(step, NeedScramSecret):
            step = server.with_secret(derive_secret("pw", b"s", 1))
        step = server.step(message)
    assert isinstance(step, Challenge | SaslFailure | NeedScramSecret | ScramOutcome)


# -- the secret's life and the login around the exchange (Authenticator, decision 0068) --------------------


async def turn_off_totp(store: MailStore) -> None:
    account = await store.get_account("demo@example.test")
    assert account is not None
    await store.set_second_factor(account.id, None, [])


async def scram_login(
    auth: Authenticator, username: str, password: str, client_ip: str = "127.0.0.1"
) -> AuthResult:
    """A whole SCRAM-SHA-256 login as a protocol drives it, with scramp as the client."""
    client = ScramClient(["SCRAM-SHA-256"], username, password)
    server = ScramMechanism()
    step = server.start(client.get_client_first().encode())
    assert isinstance(step, NeedScramSecret)
    step = server.with_secret(await auth.scram_secret(step.authcid, client_ip=client_ip))
    assert isinstance(step, Challenge)
    client.set_server_first(step.data.decode())
    step = server.step(client.get_client_final().encode())
    if isinstance(step, Challenge):
        client.set_server_final(step.data.decode())
        step = server.step(b"")
    assert isinstance(step, ScramOutcome)
    return await auth.scram_finish(
        protocol="imap", client_ip=client_ip, outcome=step, mechanism="SCRAM-SHA-256", tls=True
    )


def test_the_secret_is_made_at_a_password_login_and_goes_with_a_password_change(
    tmp_path: Path, password_hash: str, sleep: FakeSleep
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        # an account from before SCRAM: no secret yet, so SCRAM fails (as for a wrong password)
        assert (await scram_login(auth, "demo@example.test", PASSWORD)).status == "bad-credentials"
        assert (await pop3_login(auth, "demo@example.test", PASSWORD)).ok  # makes the secret
        result = await scram_login(auth, "Demo@Example.test", PASSWORD)
        assert result.ok
        assert result.account is not None
        assert result.account.address == "demo@example.test"
        assert (await scram_login(auth, "demo@example.test", "not the password")).status == "bad-credentials"
        # a password change takes the old secret away and makes the new one
        await operations.change_password(store, "demo@example.test", "a new password 123", by="test")
        assert (await scram_login(auth, "demo@example.test", PASSWORD)).status == "bad-credentials"
        assert (await scram_login(auth, "demo@example.test", "a new password 123")).ok
        # a hash set without the password (a rehash, an admin's import) takes the secret away too
        await store.set_password("demo@example.test", passwords.hash_password("other password 456"))
        assert (
            await scram_login(auth, "demo@example.test", "a new password 123")
        ).status == "bad-credentials"

    run(tmp_path, password_hash, sleep, scenario)


def test_unknown_names_second_factors_and_lockouts(
    tmp_path: Path, password_hash: str, sleep: FakeSleep
) -> None:
    async def scenario(store: MailStore, auth: Authenticator) -> None:
        unknown = await auth.scram_secret("nobody@example.test", client_ip="127.0.0.1")
        again = await auth.scram_secret("nobody@example.test", client_ip="127.0.0.1")
        assert again.salt == unknown.salt  # nothing told
        assert (await scram_login(auth, "nobody@example.test", "x")).status == "bad-credentials"
        assert (await pop3_login(auth, "demo@example.test", PASSWORD)).ok
        assert (await scram_login(auth, "demo@example.test", PASSWORD, "192.0.2.9")).ok
        # a second factor on: only app passwords open the mail protocols, and they have no SCRAM secret
        await turn_on_totp(store)
        assert (await scram_login(auth, "demo@example.test", PASSWORD)).status == "bad-credentials"
        # failures count for the lockout as a password's do
        for n in range(CONFIG.ip_max_failures):  # other names each time: no account lockout comes first
            await scram_login(auth, f"nobody{n}@example.test", "guess", "198.51.100.7")
        assert (await scram_login(auth, "demo@example.test", PASSWORD, "198.51.100.7")).status == "locked-out"
        # and the server's final message never confirms the right password to a locked-out client (found by
        # review: it did, and a client could cancel before the lockout answer): the proof fails at once
        await turn_off_totp(store)
        server = ScramMechanism()
        client = ScramClient(["SCRAM-SHA-256"], "demo@example.test", PASSWORD)
        assert isinstance(server.start(client.get_client_first().encode()), NeedScramSecret)
        first = server.with_secret(await auth.scram_secret("demo@example.test", client_ip="198.51.100.7"))
        assert isinstance(first, Challenge)
        client.set_server_first(first.data.decode())
        assert server.step(client.get_client_final().encode()) == ScramOutcome("demo@example.test", "", False)
        # from elsewhere, with the lockout of that client only, the same password works
        assert (await scram_login(auth, "demo@example.test", PASSWORD, "203.0.113.5")).ok

    run(tmp_path, password_hash, sleep, scenario)
