"""The `[spam]` settings of the built-in checks (docs/decisions/0089) as a config file gives them: defaults,
zones normalised, and every bad zone, network or duration reported with its key; the fixed bounds the docs
name."""

from __future__ import annotations

from pathlib import Path

import pytest

from postoffice.config import ConfigError, load_config
from postoffice.net.tls import generate_self_signed
from postoffice.settings import declared
from postoffice.spam.greylist import MAX_PENDING
from postoffice.spam.screen import MAX_GREYLISTED
from postoffice.spam.settings import LOCAL_NETWORKS, SpamConfig


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("certs")
    generate_self_signed("mail.example.test", directory / "cert.pem", directory / "key.pem")
    return f'[tls]\ncertificate = "{directory / "cert.pem"}"\nprivate_key = "{directory / "key.pem"}"\n'


def config_file(tmp_path: Path, tls: str, spam: str) -> Path:
    path = tmp_path / "postoffice.toml"
    path.write_text(f"[spam]\n{spam}\n{tls}")
    return path


def test_the_built_in_checks_are_off_but_the_verdict_by_default(tmp_path: Path, tls: str) -> None:
    spam = load_config(config_file(tmp_path, tls, "")).spam
    assert (spam.dnsbl_zones, spam.dnsbl_action, spam.greylisting, spam.builtin_filter) == (
        (),
        "reject",
        False,
        True,
    )
    assert spam.dnsbl_exempt == spam.greylist_exempt == LOCAL_NETWORKS
    assert (spam.greylist_delay, spam.greylist_retry_window, spam.greylist_expiry) == (300, 86400, 35 * 86400)


def test_zones_are_written_as_dns_names_without_the_final_dot(tmp_path: Path, tls: str) -> None:
    text = 'dnsbl_zones = ["ZEN.Spamhaus.org.", "bl.spamcop.net"]\ngreylist_exempt = ["2001:db8::/32"]'
    spam = load_config(config_file(tmp_path, tls, text)).spam
    assert list(spam.dnsbl_zones) == ["zen.spamhaus.org", "bl.spamcop.net"]
    assert list(spam.greylist_exempt) == ["2001:db8::/32"]


def test_every_bad_value_is_reported_with_its_key(tmp_path: Path, tls: str) -> None:
    text = (
        'dnsbl_zones = ["localhost", "ok.example"]\ndnsbl_action = "drop"\ndnsbl_timeout = 0\n'
        'dnsbl_exempt = ["10.0.0.0/33"]\ngreylist_delay = -1\ngreylist_auto_allowlist = -2\n'
        'greylist_exempt = ["not a network"]\n'
    )
    with pytest.raises(ConfigError) as refused:
        load_config(config_file(tmp_path, tls, text))
    keys = sorted(problem.key for problem in refused.value.problems)
    assert keys == [
        "spam.dnsbl_action",
        "spam.dnsbl_exempt[0]",
        "spam.dnsbl_timeout",
        "spam.dnsbl_zones[0]",  # the item that is wrong
        "spam.greylist_auto_allowlist",
        "spam.greylist_delay",
        "spam.greylist_exempt[0]",
    ]
    zone = next(p for p in refused.value.problems if p.key == "spam.dnsbl_zones[0]")
    assert "a single label" in zone.message


def test_the_greylisting_bounds_the_docs_name_are_the_codes() -> None:
    doc = declared(SpamConfig).setting("greylisting").doc
    assert f"up to {MAX_PENDING} per" in doc
    assert f"with {MAX_GREYLISTED} greylisted recipients" in doc
