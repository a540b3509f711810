"""Property tests of the canonical address form (postoffice.directory.address): normalising twice changes
nothing, for any text, and the spellings that name one mailbox all give one key."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from postoffice.directory.address import (
    AddressError,
    normalize_address,
    normalize_domain,
    parse_address,
    parse_domain,
    split_address,
)

SETTINGS = settings(max_examples=1000, deadline=None)

# Characters that make normalisation interesting: the IDNA full stops, the fullwidth and small "@", NFKC
# dots (ONE DOT LEADER, SMALL FULL STOP), whitespace (ASCII, NBSP, ideographic), characters nameprep maps to
# nothing (soft hyphen, zero-width space), combining marks, letters whose case mapping changes length or
# composition (İ, ẞ, ǅ, Kelvin sign, "H" before COMBINING MACRON BELOW), fullwidth letters, and "@" / ".".
TRICKY = (
    "@.\u3002\uff0e\uff61\uff20\ufe6b\u2024\ufe52 \t\u00a0\u3000\u00ad\u200b\u0301\u0307\u0331\u0308"
    "\u0130\u1e9e\u01c5\u212a\u00df\u00c5\u212bHKaAzZ-+xn\uff45\uff58\u00e9\u00fcB\u00dc"
)
ADDRESSY = st.text(alphabet=st.sampled_from(TRICKY), max_size=24)
ANY_TEXT = st.text(max_size=40)


@SETTINGS
@given(st.one_of(ADDRESSY, ANY_TEXT, st.builds(lambda a, b: f"{a}@{b}", ADDRESSY, ADDRESSY)))
@example("bob@example.test\u3002")
@example("bob@example.test\u2024")
@example("bob@example.test \u3002")
@example("a@b\uff20c.test")
@example("H\u0331@x.test")
@example("bob@")
@example("a@B\u00fccher@\u3002")
def test_normalising_twice_changes_nothing(text: str) -> None:
    once = normalize_address(text)
    assert normalize_address(once) == once
    local, domain = split_address(once)
    assert split_address(text) == (local, domain)


@SETTINGS
@given(st.one_of(ADDRESSY, ANY_TEXT))
def test_domain_normalising_twice_changes_nothing(text: str) -> None:
    once = normalize_domain(text)
    assert normalize_domain(once) == once
    assert not once.endswith(".")


@pytest.mark.parametrize(
    "spelling",
    [
        "bob@example.test",
        "bob@example.test.",
        "bob@example.test..",
        "bob@example.test\u3002",
        "bob@example.test\uff0e",
        "bob@example.test\uff61",
        "bob@example\u3002test",
        "bob@example.test\u2024",
        "BOB@EXAMPLE.TEST",
        "Bob@Example.Test\u3002",
        "  bob@example.test \t",
        "\u3000bob@example.test\u3000",
        "bob@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.test",
    ],
)
def test_spellings_of_one_address_give_one_key(spelling: str) -> None:
    assert normalize_address(spelling) == "bob@example.test"


def test_local_parts_are_lowercased_then_composed() -> None:
    assert normalize_address("J\u00dcRGEN@example.test") == "j\u00fcrgen@example.test"
    assert normalize_address("ju\u0308rgen@example.test") == "j\u00fcrgen@example.test"  # NFC
    assert normalize_address("H\u0331@example.test") == "\u1e96@example.test"  # lower first, then NFC
    assert normalize_address("strau\u00df@example.test") != normalize_address("strauss@example.test")


def test_a_fullwidth_at_sign_does_not_separate() -> None:
    assert normalize_address("bob\uff20example.test") == "bob\uff20example.test"
    assert split_address("bob\uff20example.test") == ("bob\uff20example.test", "")


def test_non_ascii_domains_are_idna_encoded() -> None:
    assert normalize_address("kim@B\u00fccher.test") == "kim@xn--bcher-kva.test"
    assert normalize_address("kim@XN--BCHER-KVA.test") == "kim@xn--bcher-kva.test"


def test_a_domain_idna_refuses_stays_text_and_is_stable() -> None:
    long_label = "\u00fc" + "a" * 70
    assert normalize_domain(f"{long_label}.test") == f"{long_label}.test"


def test_parse_address_accepts_what_the_cli_should() -> None:
    assert parse_address(" Demo@Example.Test. ") == "demo@example.test"
    assert parse_address("kim@B\u00fccher.test") == "kim@xn--bcher-kva.test"
    assert parse_address("first.last+tag@example.test") == "first.last+tag@example.test"
    assert parse_domain("Example.Test\u3002") == "example.test"


@pytest.mark.parametrize(
    "text",
    [
        "demo",
        "@example.test",
        "demo@",
        "de mo@example.test",
        "a..b@example.test",
        "demo@exa_mple.test",
        "demo@example..test",
        "a" * 65 + "@example.test",
        "demo\uff20example.test",
        "demo@-x.test",
    ],
)
def test_parse_address_refuses_what_is_not_an_address(text: str) -> None:
    with pytest.raises(AddressError):
        parse_address(text)


@SETTINGS
@given(st.one_of(ADDRESSY, ANY_TEXT))
def test_parse_address_gives_the_canonical_form_or_refuses(text: str) -> None:
    try:
        parsed = parse_address(text)
    except AddressError:
        return
    assert parsed == normalize_address(text)
    assert parse_address(parsed) == parsed
