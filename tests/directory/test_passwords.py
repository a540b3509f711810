"""argon2id password hashes and generated passwords."""

from __future__ import annotations

import asyncio

import argon2
import pytest

from postoffice.directory.passwords import (
    PASSWORD_ALPHABET,
    generate_password,
    hash_password,
    hash_password_async,
    needs_rehash,
    verify_dummy_password,
    verify_password,
    verify_password_async,
)


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password("correct horse battery staple")


def test_hash_is_an_argon2id_phc_string(stored: str) -> None:
    assert stored.startswith("$argon2id$v=19$")


def test_the_same_password_hashes_differently_each_time() -> None:
    assert hash_password("pw") != hash_password("pw")


def test_the_right_password_verifies(stored: str) -> None:
    assert verify_password(stored, "correct horse battery staple")


def test_a_wrong_password_does_not_verify(stored: str) -> None:
    assert not verify_password(stored, "Correct horse battery staple")
    assert not verify_password(stored, "")


def test_non_ascii_passwords_round_trip() -> None:
    assert verify_password(hash_password("pässwörd ✉"), "pässwörd ✉")


@pytest.mark.parametrize(
    "bad_hash",
    [
        "",
        "not a hash",
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$",
        "$argon2id$v=19$m=1,t=1,p=1$AAAA$BBBB",
        "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",  # bcrypt: another scheme
        "{PLAIN}secret",
    ],
)
def test_a_malformed_or_foreign_hash_never_raises_and_never_verifies(bad_hash: str) -> None:
    assert verify_password(bad_hash, "secret") is False


def test_a_fresh_hash_needs_no_rehash(stored: str) -> None:
    assert needs_rehash(stored) is False


def test_a_hash_with_weaker_parameters_needs_a_rehash() -> None:
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw")
    assert verify_password(weak, "pw")
    assert needs_rehash(weak) is True


def test_a_malformed_hash_needs_a_rehash() -> None:
    assert needs_rehash("garbage") is True


def test_generated_passwords_are_20_unambiguous_characters() -> None:
    passwords = {generate_password() for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        assert len(password) == 20
        assert set(password) <= set(PASSWORD_ALPHABET)
    assert not set("0O1lI") & set(PASSWORD_ALPHABET)


def test_generated_password_length_can_be_chosen_but_not_too_short() -> None:
    assert len(generate_password(32)) == 32
    with pytest.raises(ValueError, match="at least 8 characters"):
        generate_password(4)


def test_dummy_verification_is_always_false() -> None:
    assert verify_dummy_password("anything") is False


def test_async_variants_run_off_the_event_loop() -> None:
    async def roundtrip() -> bool:
        return await verify_password_async(await hash_password_async("pw"), "pw")

    assert asyncio.run(roundtrip())
