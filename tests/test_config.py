"""Config loading and validation: defaults, every kind of problem with its key, hints, the default file."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from postoffice import config_doc
from postoffice.config import (
    Config,
    ConfigError,
    ConfigProblem,
    config_sections,
    load_config,
    render_default_config,
    standard_listeners,
)
from postoffice.net.tls import generate_self_signed
from postoffice.protocols import SERVICES
from postoffice.settings import convert

WriteConfig = Callable[..., Path]


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A certificate + key pair, and a second key that does not belong to it."""
    directory = tmp_path_factory.mktemp("certs")
    generate_self_signed("mail.example.test", directory / "cert.pem", directory / "key.pem")
    generate_self_signed("other.example.test", directory / "other-cert.pem", directory / "other-key.pem")
    return directory


@pytest.fixture
def write(tmp_path: Path, cert_dir: Path) -> WriteConfig:
    """Write a config whose [tls] section points at a working certificate (unless the text has its own)."""

    def write_config(text: str, *, tls: bool = True) -> Path:
        if tls and "[tls]" not in text:
            # Appended: a table at the end never captures the test's own top-level keys.
            text += (
                f'\n[tls]\ncertificate = "{cert_dir / "cert.pem"}"\nprivate_key = "{cert_dir / "key.pem"}"\n'
            )
        path = tmp_path / "postoffice.toml"
        path.write_text(text)
        return path

    return write_config


def problems_of(path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def keys_of(path: Path) -> list[str]:
    return [p.key for p in problems_of(path)]


# -- defaults ------------------------------------------------------------------------------------------------


def test_file_without_settings_gives_every_default(write: WriteConfig) -> None:
    config = load_config(write(""))
    assert config.smtp.max_message_size == 52428800
    assert config.smtp.max_recipients == 1000
    assert config.smtp.max_connections == 500
    assert config.smtp.max_connections_per_ip == 20
    assert config.smtp.command_timeout == 300
    assert config.smtp.data_timeout == 180
    assert config.smtp.max_errors == 20
    assert config.auth.allow_plaintext_auth is False
    assert config.server.log_level == "info"
    assert config.server.shutdown_grace == 30
    assert config.server.user == ""
    assert config.server.group == ""
    assert config.server.hostname  # the machine's name
    assert config.tls.min_version == "TLSv1.2"
    assert config.store.path == config.base_dir / "store" / "mail.sqlite3"
    assert config.store.spool_dir == config.base_dir / "spool"
    assert config.store.min_free_space == 100 * 1024 * 1024
    assert config.store.disk_reserve == 16 * 1024 * 1024


def test_imap_mailbox_limits_have_defaults_and_can_be_set(write: WriteConfig) -> None:
    """docs/decisions/0021."""
    imap = load_config(write("")).imap
    assert (imap.max_mailboxes, imap.max_mailbox_name_length, imap.max_mailbox_depth) == (1000, 1024, 32)
    text = "[imap]\nmax_mailboxes = 5000\nmax_mailbox_name_length = 255\nmax_mailbox_depth = 8\n"
    imap = load_config(write(text)).imap
    assert (imap.max_mailboxes, imap.max_mailbox_name_length, imap.max_mailbox_depth) == (5000, 255, 8)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[imap]\nmax_mailboxes = 0\n", "imap.max_mailboxes"),
        ("[imap]\nmax_mailbox_name_length = 63\n", "imap.max_mailbox_name_length"),
        ("[imap]\nmax_mailbox_depth = 0\n", "imap.max_mailbox_depth"),
    ],
)
def test_imap_mailbox_limits_have_a_floor(write: WriteConfig, text: str, key: str) -> None:
    assert keys_of(write(text)) == [key]


def test_standard_listeners_have_their_standard_ports_and_tls_modes(write: WriteConfig) -> None:
    listeners = load_config(write("")).listeners
    expected = {
        "smtp": ("smtp", 25, "starttls", True),
        "submission": ("submission", 587, "starttls", True),
        "submissions": ("submission", 465, "implicit", True),
        "pop3": ("pop3", 110, "starttls", True),
        "pop3s": ("pop3", 995, "implicit", True),
        "imap": ("imap", 143, "starttls", True),
        "imaps": ("imap", 993, "implicit", True),
        "pop2": ("pop2", 109, "none", False),
        "managesieve": ("managesieve", 4190, "starttls", True),
        "http": ("http", 80, "none", True),
        "https": ("http", 443, "implicit", True),
    }
    assert {
        name: (lst.protocol, lst.port, lst.tls, lst.enabled) for name, lst in listeners.items()
    } == expected
    assert all(lst.address == "0.0.0.0" for lst in listeners.values())  # noqa: S104 - the default checked
    assert listeners["smtp"].purpose == "other mail servers deliver mail to us"
    assert listeners["submissions"].purpose == "same, TLS from the first byte (RFC 8314)"
    assert listeners["pop2"].purpose == "the legacy protocol; off by default"


def test_a_listener_table_overrides_only_the_keys_it_names(write: WriteConfig) -> None:
    listeners = load_config(write("[listeners.smtp]\nport = 2525\n")).listeners
    assert (listeners["smtp"].port, listeners["smtp"].tls, listeners["smtp"].enabled) == (
        2525,
        "starttls",
        True,
    )


def test_relative_paths_resolve_against_the_config_directory_not_the_cwd(
    write: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write('[store]\npath = "db/x.sqlite3"\nspool_dir = "../spool"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert config.path == path.resolve()
    assert config.base_dir == tmp_path.resolve()
    assert config.store.path == tmp_path.resolve() / "db" / "x.sqlite3"
    assert config.store.spool_dir == tmp_path.resolve() / ".." / "spool"


def test_relative_certificate_paths_resolve_against_the_config_directory(
    tmp_path: Path, cert_dir: Path
) -> None:
    shutil.copytree(cert_dir, tmp_path / "tls")
    (tmp_path / "postoffice.toml").write_text("")
    config = load_config(tmp_path / "postoffice.toml")
    assert config.tls.certificate == tmp_path.resolve() / "tls" / "cert.pem"
    assert config.tls.private_key == tmp_path.resolve() / "tls" / "key.pem"


# -- problems, each with its key -----------------------------------------------------------------------------


def test_misspelled_setting_is_reported_with_a_did_you_mean_hint(write: WriteConfig) -> None:
    [problem] = problems_of(write("[smtp]\nmax_mesage_size = 10\n"))
    assert problem.key == "smtp.max_mesage_size"
    assert "unknown setting" in problem.message
    assert 'did you mean "max_message_size"' in problem.hint


def test_misspelled_section_is_reported_with_a_did_you_mean_hint(write: WriteConfig) -> None:
    [problem] = problems_of(write("[smpt]\nmax_errors = 3\n"))
    assert problem.key == "smpt"
    assert '"smtp"' in problem.hint


def test_misspelled_listener_setting_is_reported(write: WriteConfig) -> None:
    [problem] = problems_of(write("[listeners.smtp]\nprot = 25\n"))
    assert problem.key == "listeners.smtp.prot"
    assert '"port"' in problem.hint


def test_unknown_listener_name_without_protocol_suggests_the_standard_name(write: WriteConfig) -> None:
    [problem] = problems_of(write("[listeners.imapp]\nport = 1143\n"))
    assert problem.key == "listeners.imapp"
    assert 'did you mean "imap"' in problem.hint


def test_custom_listener_with_protocol_and_port_is_accepted(write: WriteConfig) -> None:
    config = load_config(
        write('[listeners.smtp-alt]\nprotocol = "smtp"\nport = 2525\naddress = "127.0.0.1"\n')
    )
    listener = config.listeners["smtp-alt"]
    assert (listener.protocol, listener.port, listener.tls, listener.enabled) == ("smtp", 2525, "none", True)
    assert listener.purpose == "other mail servers deliver mail to us"


def test_custom_listener_needs_a_port(write: WriteConfig) -> None:
    assert keys_of(write('[listeners.alt]\nprotocol = "smtp"\n')) == ["listeners.alt.port"]


def test_unknown_protocol_is_reported_with_a_hint(write: WriteConfig) -> None:
    [problem] = problems_of(write('[listeners.alt]\nprotocol = "imap4"\nport = 1143\n'))
    assert problem.key == "listeners.alt.protocol"
    assert '"imap"' in problem.hint


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('[listeners.smtp]\nport = "25"\n', "listeners.smtp.port", "expected an integer, got a string"),
        ('[listeners.smtp]\nenabled = "yes"\n', "listeners.smtp.enabled", "expected true or false"),
        ("[listeners.smtp]\naddress = 127\n", "listeners.smtp.address", "expected a string"),
        ("[smtp]\nmax_recipients = 1.5\n", "smtp.max_recipients", "expected an integer, got a number"),
        ("[smtp]\nmax_recipients = true\n", "smtp.max_recipients", "expected an integer, got a boolean"),
        ('[smtp]\ncommand_timeout = "5m"\n', "smtp.command_timeout", "expected a number"),
        ("[auth]\nallow_plaintext_auth = 1\n", "auth.allow_plaintext_auth", "expected true or false"),
        ("server = 5\n", "server", "expected a table"),
        ("[listeners]\nsmtp = 25\n", "listeners.smtp", "expected a table"),
    ],
)
def test_wrong_types_are_reported_with_their_key(write: WriteConfig, text: str, key: str, words: str) -> None:
    [problem] = problems_of(write(text))
    assert problem.key == key
    assert words in problem.message


@pytest.mark.parametrize("port", [-1, 65536, 70000])
def test_ports_outside_1_to_65535_are_reported(write: WriteConfig, port: int) -> None:
    [problem] = problems_of(write(f"[listeners.imap]\nport = {port}\n"))
    assert problem.key == "listeners.imap.port"
    assert "between 1 and 65535" in problem.message


def test_port_zero_picks_a_free_port_and_never_clashes(write: WriteConfig) -> None:
    text = "".join(f"[listeners.{name}]\nport = 0\n" for name in standard_listeners())
    assert {lst.port for lst in load_config(write(text)).listeners.values()} == {0}


def test_tls_mode_must_be_none_starttls_or_implicit(write: WriteConfig) -> None:
    [problem] = problems_of(write('[listeners.smtp]\ntls = "startls"\n'))
    assert problem.key == "listeners.smtp.tls"
    assert 'did you mean "starttls"' in problem.hint


def test_listener_address_must_be_an_ip_address(write: WriteConfig) -> None:
    [problem] = problems_of(write('[listeners.smtp]\naddress = "mail.example.test"\n'))
    assert problem.key == "listeners.smtp.address"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[smtp]\nmax_message_size = 0\n", "smtp.max_message_size"),
        ("[smtp]\nmax_connections = -5\n", "smtp.max_connections"),
        ("[smtp]\ncommand_timeout = 0\n", "smtp.command_timeout"),
        ("[smtp]\ndata_timeout = -1.5\n", "smtp.data_timeout"),
        ("[smtp]\nmax_errors = 0\n", "smtp.max_errors"),
        ("[server]\nshutdown_grace = -1\n", "server.shutdown_grace"),
        ("[store]\nmin_free_space = -1\n", "store.min_free_space"),
        ("[store]\ndisk_reserve = -1\n", "store.disk_reserve"),
        ("[store]\ndisk_reserve = 1.5\n", "store.disk_reserve"),
    ],
)
def test_sizes_and_timeouts_must_be_positive(write: WriteConfig, text: str, key: str) -> None:
    assert keys_of(write(text)) == [key]


def test_zero_shutdown_grace_means_close_at_once_and_is_allowed(write: WriteConfig) -> None:
    assert load_config(write("[server]\nshutdown_grace = 0\n")).server.shutdown_grace == 0


def test_zero_free_space_and_zero_reserve_turn_the_disk_space_checks_off(write: WriteConfig) -> None:
    store = load_config(write("[store]\nmin_free_space = 0\ndisk_reserve = 0\n")).store
    assert (store.min_free_space, store.disk_reserve) == (0, 0)


def test_paths_that_cannot_be_expanded_or_hold_nul_are_problems_not_tracebacks(write: WriteConfig) -> None:
    """A fuzz find: "~0" (no such user) made `Path.expanduser` raise RuntimeError out of the loader."""
    keys = keys_of(write('[store]\nspool_dir = "~no-such-user-here/spool"\npath = "a\\u0000b"\n'))
    assert sorted(keys) == ["store.path", "store.spool_dir"]


def test_choices_are_checked(write: WriteConfig, cert_dir: Path) -> None:
    text = (
        '[server]\nlog_level = "verbose"\n[tls]\nmin_version = "TLSv1.1"\n'
        f'certificate = "{cert_dir / "cert.pem"}"\nprivate_key = "{cert_dir / "key.pem"}"\n'
    )
    keys = keys_of(write(text))
    assert sorted(keys) == ["server.log_level", "tls.min_version"]


def test_invalid_hostname_is_reported(write: WriteConfig) -> None:
    assert keys_of(write('[server]\nhostname = "mail_server!"\n')) == ["server.hostname"]


def test_two_enabled_listeners_on_the_same_address_and_port_clash(write: WriteConfig) -> None:
    [problem] = problems_of(write("[listeners.submission]\nport = 25\n"))
    assert problem.key == "listeners.submission.port"
    assert "listeners.smtp" in problem.message


def test_a_wildcard_address_clashes_with_a_specific_address_on_the_same_port(write: WriteConfig) -> None:
    text = '[listeners.smtp-local]\nprotocol = "smtp"\naddress = "127.0.0.1"\nport = 25\n'
    assert keys_of(write(text)) == ["listeners.smtp-local.port"]


def test_same_port_on_ipv4_and_ipv6_wildcards_does_not_clash(write: WriteConfig) -> None:
    text = '[listeners.smtp6]\nprotocol = "smtp"\naddress = "::"\nport = 25\n'
    assert load_config(write(text)).listeners["smtp6"].address == "::"


def test_a_disabled_listener_does_not_clash(write: WriteConfig) -> None:
    load_config(write("[listeners.submission]\nport = 25\nenabled = false\n"))


def test_missing_certificate_and_key_are_reported_when_a_tls_listener_is_enabled(write: WriteConfig) -> None:
    path = write('[tls]\ncertificate = "nope/cert.pem"\nprivate_key = "nope/key.pem"\n')
    problems = problems_of(path)
    assert [p.key for p in problems] == ["tls.certificate", "tls.private_key"]
    assert str(path.parent / "nope" / "cert.pem") in problems[0].message
    assert "postoffice init" in problems[0].hint


def test_certificate_files_are_not_needed_without_tls_listeners(write: WriteConfig) -> None:
    text = '[tls]\ncertificate = "nope/cert.pem"\nprivate_key = "nope/key.pem"\n'
    for name, standard in standard_listeners().items():
        if standard.tls != "none":
            text += f"[listeners.{name}]\nenabled = false\n"
    load_config(write(text))


def test_certificate_and_key_that_do_not_belong_together_are_reported(
    write: WriteConfig, cert_dir: Path
) -> None:
    path = write(
        f'[tls]\ncertificate = "{cert_dir / "cert.pem"}"\nprivate_key = "{cert_dir / "other-key.pem"}"\n'
    )
    [problem] = problems_of(path)
    assert problem.key == "tls.private_key"
    assert "do not load together" in problem.message


def test_a_certificate_file_that_is_not_pem_is_reported(
    write: WriteConfig, tmp_path: Path, cert_dir: Path
) -> None:
    (tmp_path / "junk.pem").write_text("hello\n")
    [problem] = problems_of(
        write(f'[tls]\ncertificate = "junk.pem"\nprivate_key = "{cert_dir / "key.pem"}"\n')
    )
    assert problem.key == "tls.certificate"


def test_an_expired_certificate_is_a_warning(write: WriteConfig, tmp_path: Path, cert_dir: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_pem_private_key((cert_dir / "key.pem").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)  # as `init` makes them
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "mail.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    expired = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "expired.pem").write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    config = load_config(
        write(f'[tls]\ncertificate = "expired.pem"\nprivate_key = "{cert_dir / "key.pem"}"\n')
    )
    assert [w.key for w in config.warnings if w.key.startswith("tls")] == ["tls.certificate"]


def test_an_unreadable_key_is_reported(
    write: WriteConfig, tmp_path: Path, cert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "key.pem"
    shutil.copy(cert_dir / "key.pem", key)
    key.chmod(0)
    if os.geteuid() == 0:  # root reads every file: make the permission check answer as for anyone else
        real_access = os.access
        monkeypatch.setattr(
            "postoffice.config.os.access", lambda p, mode: False if Path(p) == key else real_access(p, mode)
        )
    [problem] = problems_of(
        write(f'[tls]\ncertificate = "{cert_dir / "cert.pem"}"\nprivate_key = "key.pem"\n')
    )
    assert problem.key == "tls.private_key"
    assert "not readable" in problem.message


def test_a_directory_where_the_key_should_be_is_reported(
    write: WriteConfig, tmp_path: Path, cert_dir: Path
) -> None:
    (tmp_path / "keydir").mkdir()
    [problem] = problems_of(
        write(f'[tls]\ncertificate = "{cert_dir / "cert.pem"}"\nprivate_key = "keydir"\n')
    )
    assert problem.key == "tls.private_key"
    assert "not a file" in problem.message


def test_user_and_group_that_do_not_exist_are_reported(write: WriteConfig) -> None:
    path = write('[server]\nuser = "no-such-user-xyz"\ngroup = "no-such-group-xyz"\n')
    assert keys_of(path) == ["server.user", "server.group"]


def test_user_and_group_with_a_nul_character_are_problems_not_a_crash(write: WriteConfig) -> None:
    """pwd.getpwnam raises ValueError for them: it reached the command line as an internal error."""
    path = write('[server]\nuser = "a\\u0000b"\ngroup = "\\u0000"\n')
    assert [(p.key, p.message) for p in problems_of(path)] == [
        ("server.user", 'no such user "a\x00b"'),
        ("server.group", 'no such group "\x00"'),
    ]


def test_existing_user_is_accepted(write: WriteConfig) -> None:
    assert load_config(write('[server]\nuser = "root"\n')).server.user == "root"


def test_toml_syntax_error_reports_the_line(write: WriteConfig) -> None:
    path = write("[smtp]\nmax_errors = 3\nmax_recipients = = 4\n", tls=False)
    [problem] = problems_of(path)
    assert problem.line == 3
    assert "line 3" in problem.message
    assert problem.key == "postoffice.toml"


def test_missing_config_file_is_one_problem_with_a_hint(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path / "absent.toml")
    assert "not found" in problem.message
    assert "postoffice init" in problem.hint


def test_every_problem_is_reported_not_only_the_first(write: WriteConfig) -> None:
    text = (
        "[smtp]\nmax_mesage_size = 1\nmax_errors = 0\n"
        '[listeners.smtp]\nport = 99999\ntls = "tls"\n'
        "[listeners.submission]\nport = 25\n"
        '[server]\nuser = "no-such-user-xyz"\n'
    )
    keys = keys_of(write(text))
    assert sorted(keys) == sorted(
        [
            "smtp.max_mesage_size",
            "smtp.max_errors",
            "listeners.smtp.port",
            "listeners.smtp.tls",
            "server.user",
        ]
    )


def test_problem_renders_as_key_message_hint() -> None:
    assert str(ConfigProblem("smtp.port", "bad", "fix it")) == "smtp.port: bad (hint: fix it)"
    assert str(ConfigProblem("smtp.port", "bad")) == "smtp.port: bad"


# -- pop2 and protocols not built yet ------------------------------------------------------------------------


def test_pop2_on_a_public_address_without_plaintext_auth_is_an_error(write: WriteConfig) -> None:
    [problem] = problems_of(write("[listeners.pop2]\nenabled = true\n"))
    assert problem.key == "listeners.pop2.address"
    assert "allow_plaintext_auth" in problem.hint


def test_pop2_on_loopback_is_allowed(write: WriteConfig) -> None:
    config = load_config(write('[listeners.pop2]\nenabled = true\naddress = "127.0.0.1"\n'))
    assert config.listeners["pop2"].enabled


def test_pop2_on_a_public_address_is_allowed_with_plaintext_auth(write: WriteConfig) -> None:
    config = load_config(write("[auth]\nallow_plaintext_auth = true\n[listeners.pop2]\nenabled = true\n"))
    assert config.listeners["pop2"].enabled
    assert config.auth.allow_plaintext_auth


def test_pop2_cannot_use_tls(write: WriteConfig) -> None:
    assert keys_of(write('[listeners.pop2]\ntls = "starttls"\n')) == ["listeners.pop2.tls"]


@pytest.mark.usefixtures("unbuilt_protocol")
def test_enabled_listener_of_a_protocol_not_built_is_a_warning_not_an_error(write: WriteConfig) -> None:
    config = load_config(write("[listeners.sieve]\nenabled = true\n"))
    messages = [str(w) for w in config.warnings]
    assert (
        'listeners.sieve: protocol "sieve" is not built yet in this version; the listener will not start'
        in messages
    )
    assert not any(w.key == "listeners.smtp" for w in config.warnings)
    assert not any(w.key == "listeners.imap" for w in config.warnings)
    assert not any(w.key == "listeners.pop2" for w in config.warnings)  # disabled: nothing to warn about
    assert config.listeners["smtp"].status == "ready"
    assert config.listeners["imap"].status == "ready"
    assert config.listeners["imaps"].status == "ready"
    assert config.listeners["submission"].status == "ready"
    assert config.listeners["sieve"].status == "not built yet"
    assert config.listeners["https"].status == "ready"
    assert config.listeners["pop2"].status == "disabled"


@pytest.mark.usefixtures("unbuilt_protocol")
def test_listeners_of_a_protocol_not_built_are_off_by_default_without_a_warning(write: WriteConfig) -> None:
    config = load_config(write(""))
    assert config.warnings == ()
    assert config.listeners["sieve"].status == "disabled"
    assert config.listeners["https"].status == "ready"  # built: on by default


@pytest.mark.usefixtures("unbuilt_protocol")
def test_a_protocol_that_gets_built_is_ready(write: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its registration gains a factory (postoffice.protocols): nothing else changes for the config."""
    built = dataclasses.replace(
        SERVICES["sieve"], factory=lambda settings, context: pytest.fail("the config never builds handlers")
    )
    monkeypatch.setitem(SERVICES, "sieve", built)
    config = load_config(write(""))
    assert not any(w.key == "listeners.sieve" for w in config.warnings)
    assert config.listeners["sieve"].status == "ready"


# -- the default file ----------------------------------------------------------------------------------------


def test_default_config_round_trips_without_problems(tmp_path: Path, cert_dir: Path) -> None:
    shutil.copytree(cert_dir, tmp_path / "tls")
    path = tmp_path / "postoffice.toml"
    path.write_text(render_default_config("mail.example.test", "example.test"))
    config = load_config(path)
    assert config.server.hostname == "mail.example.test"
    assert config.listeners["smtp"].port == 25
    assert config.listeners["pop2"].enabled is False
    assert config.smtp.max_message_size == 52428800


def test_default_config_names_every_setting_with_a_comment_above_it() -> None:
    text = render_default_config("mail.example.test", "example.test")
    doc = tomllib.loads(text)
    lines = text.splitlines()
    assert set(doc) == {spec.name for spec in config_sections()} | {"listeners"}
    for spec in config_sections():
        assert set(doc[spec.name]) == {s.name for s in spec.settings}
        for setting in spec.settings:
            index = next(
                i
                for i, line in enumerate(lines)
                if line.startswith(f"{setting.name} = ") and i > lines.index(f"[{spec.name}]")
            )
            assert lines[index - 1] == f"# {setting.comment}"
    assert set(doc["listeners"]) == set(standard_listeners())
    for table in doc["listeners"].values():
        assert set(table) == {"enabled", "address", "port", "tls"}


def test_default_config_with_port_offset_and_address(tmp_path: Path, cert_dir: Path) -> None:
    shutil.copytree(cert_dir, tmp_path / "tls")
    path = tmp_path / "postoffice.toml"
    path.write_text(
        render_default_config("mail.example.test", "example.test", port_offset=10000, address="127.0.0.1")
    )
    listeners = load_config(path).listeners
    assert sorted(lst.port for lst in listeners.values()) == sorted(
        # 8080, not 10080: browsers refuse that one
        [10025, 10587, 10465, 10110, 10995, 10143, 10993, 10109, 14190, 8080, 8443]
    )
    assert {lst.address for lst in listeners.values()} == {"127.0.0.1"}


def test_default_config_refuses_an_offset_beyond_the_port_range() -> None:
    with pytest.raises(ValueError, match=r"puts a port outside 1\.\.65535"):
        render_default_config("mail.example.test", "example.test", port_offset=65000)


def test_default_config_writes_every_declared_default(tmp_path: Path, cert_dir: Path) -> None:
    """Loading the file `init` writes gives every section exactly its declared defaults (the one exception,
    the host name, is init's argument)."""
    shutil.copytree(cert_dir, tmp_path / "tls")
    path = tmp_path / "postoffice.toml"
    path.write_text(render_default_config("mail.example.test", "example.test"))
    config = load_config(path)
    assert config.warnings == ()
    for spec in config_sections():
        expected = {
            s.name: convert(s, "mail.example.test" if s.name == "hostname" else s.default, config.base_dir)
            for s in spec.settings
        }
        assert dataclasses.asdict(config.section(spec.cls)) == expected


# -- the documentation ---------------------------------------------------------------------------------------

CONFIGURATION_MD = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_configuration_md_tables_are_generated_from_the_declarations() -> None:
    """docs/configuration.md shows every setting as declared; after changing a declaration, run
    `python -m postoffice.config_doc`."""
    text = CONFIGURATION_MD.read_text()
    assert config_doc.render(text) == text, (
        "docs/configuration.md is out of date: python -m postoffice.config_doc"
    )


def test_configuration_md_documents_every_setting() -> None:
    text = CONFIGURATION_MD.read_text()
    for spec in config_sections():
        block = text.split(f"<!-- generated: [{spec.name}] -->", 1)[1].split("<!-- end generated -->", 1)[0]
        rows = block.strip().splitlines()[2:]
        assert [row.split("`")[1] for row in rows] == [s.name for s in spec.settings]


def test_a_section_without_a_marker_in_the_docs_is_an_error() -> None:
    text = CONFIGURATION_MD.read_text()
    start = text.index("<!-- generated: [imap] -->")
    end = text.index("<!-- end generated -->", start) + len("<!-- end generated -->")
    with pytest.raises(ValueError, match=r"\[imap\]"):
        config_doc.render(text[:start] + text[end:])


def test_config_doc_check_exits_1_when_the_file_is_out_of_date(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(CONFIGURATION_MD.read_text().replace("| `max_errors` |", "| `max_errs` |", 1))
    assert config_doc.main(["--check", str(stale)]) == 1
    assert config_doc.main([str(stale)]) == 0
    assert stale.read_text() == CONFIGURATION_MD.read_text()
    assert config_doc.main(["--check", str(stale)]) == 0


# -- renamed settings ----------------------------------------------------------------------------------------


def test_relay_networks_default_to_nobody(write: WriteConfig) -> None:
    assert load_config(write("")).smtp.relay_networks == ()


def test_relay_networks_are_read_from_smtp(write: WriteConfig) -> None:
    config = load_config(write('[smtp]\nrelay_networks = ["192.0.2.0/24", "2001:db8::/32"]\n'))
    assert config.smtp.relay_networks == ("192.0.2.0/24", "2001:db8::/32")
    assert config.warnings == ()


def test_the_old_name_queue_trusted_networks_still_works_with_a_warning(write: WriteConfig) -> None:
    config = load_config(write('[queue]\ntrusted_networks = ["192.0.2.0/24"]\n'))
    assert config.smtp.relay_networks == ("192.0.2.0/24",)
    [warning] = config.warnings
    assert warning.key == "queue.trusted_networks"
    assert "relay_networks in [smtp]" in warning.message


def test_a_bad_network_is_reported_under_the_name_it_was_written_with(write: WriteConfig) -> None:
    [old] = problems_of(write('[queue]\ntrusted_networks = ["192.0.2.0/24", "nonsense"]\n'))
    assert (old.key, old.message) == ("queue.trusted_networks[1]", '"nonsense" is not a network')
    [new] = problems_of(write('[smtp]\nrelay_networks = ["nonsense"]\n'))
    assert (new.key, new.message) == ("smtp.relay_networks[0]", '"nonsense" is not a network')


def test_the_old_and_the_new_name_together_are_a_problem(write: WriteConfig) -> None:
    text = '[smtp]\nrelay_networks = ["192.0.2.0/24"]\n[queue]\ntrusted_networks = ["198.51.100.0/24"]\n'
    [problem] = problems_of(write(text))
    assert problem.key == "queue.trusted_networks"
    assert "set too" in problem.message
    assert problem.hint == "remove queue.trusted_networks"


def test_a_setting_unknown_under_either_name_is_still_unknown(write: WriteConfig) -> None:
    [problem] = problems_of(write('[smtp]\ntrusted_networks = ["192.0.2.0/24"]\n'))
    assert (problem.key, problem.message) == ("smtp.trusted_networks", "unknown setting")


# -- sections by class ---------------------------------------------------------------------------------------


def test_each_section_is_its_declared_dataclass(write: WriteConfig) -> None:
    config = load_config(write(""))
    for spec in config_sections():
        assert isinstance(config.section(spec.cls), spec.cls)
    assert config.smtp is config.section(type(config.smtp))
    assert isinstance(config, Config)


# -- the protocol registry -----------------------------------------------------------------------------------


def test_every_registered_service_is_complete_and_its_listener_names_are_unique() -> None:
    names = [port.name for service in SERVICES.values() for port in service.ports]
    assert len(names) == len(set(names))
    for name, service in SERVICES.items():
        assert service.name == name
        assert service.purpose
        assert all(port.tls in service.tls_modes for port in service.ports), name
        if service.app is not None:  # served by a server of its own (the web), which keeps its own caps
            assert service.settings is not None, name
            assert service.factory is None, name
        elif service.built:
            assert service.settings is not None, name
            assert service.refuse is not None, name
            assert service.pool, name
            assert service.caps is not None, name
            pool = [other.caps for other in SERVICES.values() if other.pool == service.pool]
            assert set(pool) == {service.caps}, f"pool {service.pool} has one set of caps"
    assert [name for name, service in SERVICES.items() if not service.built] == []
