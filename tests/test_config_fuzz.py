"""Property tests of the config loader and writer (postoffice.config, postoffice.settings): any value of any
declared setting, written as TOML, loads back as declared; any file whatsoever gives a Config or a
ConfigError naming keys the file has, never another exception."""

from __future__ import annotations

import ipaddress
import re
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from postoffice.config import ConfigError, config_sections, load_config, standard_listeners
from postoffice.net.tls import generate_self_signed
from postoffice.settings import Setting, convert, toml_value

SETTINGS = settings(max_examples=300, deadline=None)

#: Values that pass a setting's own check, for the settings that have one (the rest: by kind).
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_NETWORKS = st.lists(
    st.builds(
        lambda ip, bits: str(ipaddress.ip_network(f"{ip}/{bits % (ip.max_prefixlen + 1)}", strict=False)),
        st.ip_addresses(),
        st.integers(0, 128),
    ),
    max_size=3,
)
_CHECKED: dict[str, st.SearchStrategy[Any]] = {
    "server.hostname": st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    "server.user": st.sampled_from(["", "root"]),
    "server.group": st.just(""),
    "smtp.relay_networks": _NETWORKS,
    "spam.dnsbl_exempt": _NETWORKS,
    "spam.greylist_exempt": _NETWORKS,
    "spam.dnsbl_zones": st.lists(st.lists(_LABEL, min_size=2, max_size=4).map(".".join), max_size=3),
    "queue.nameservers": st.lists(st.ip_addresses().map(str), max_size=3),
    "mta_sts.max_age": st.integers(0, 31557600),
    "spam.rspamd_url": st.one_of(
        st.just(""), st.integers(1, 65535).map(lambda port: f"http://127.0.0.1:{port}")
    ),
    "spam.controller_url": st.one_of(st.just(""), _LABEL.map(lambda host: f"http://{host}:11334")),
    "mta_sts.mx": st.lists(
        st.tuples(st.sampled_from(["", "*."]), st.lists(_LABEL, min_size=1, max_size=3).map(".".join)).map(
            "".join
        ),
        max_size=3,
    ),
}
#: Kept as the fixture sets them: the certificate must load.
_TLS_FILES = ("certificate", "private_key")
_FIXED = {f"tls.{name}" for name in _TLS_FILES}

_TEXT = st.text(max_size=20)


def _valid(section: str, item: Setting) -> st.SearchStrategy[Any]:
    key = f"{section}.{item.name}"
    if key in _CHECKED:
        return _CHECKED[key]
    if item.kind == "bool":
        return st.booleans()
    if item.kind in ("int", "number"):
        low = int(item.minimum) if item.minimum is not None else (1 if item.positive else -(2**40))
        ints = st.integers(low, 2**40)
        if item.kind == "int":
            return ints
        return st.one_of(ints, st.floats(low, 1e12, allow_nan=False))
    if item.kind == "choice":
        return st.sampled_from(item.choices)
    if item.kind == "path":
        # a path is refused with NUL in it, or with a "~user" that cannot be expanded (test_config.py)
        return _TEXT.filter(
            lambda text: text.strip() != "" and "\x00" not in text and not text.startswith("~")
        )
    if item.kind == "list":
        return st.lists(_TEXT, max_size=3)
    if item.file:  # a file's name in a string ("" = none): refused with NUL or an unexpandable "~user"
        return _TEXT.filter(lambda text: "\x00" not in text and not text.strip().startswith("~"))
    return _TEXT


@st.composite
def valid_choices(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """Some settings of some sections, each with a value it accepts."""
    chosen: dict[str, dict[str, Any]] = {}
    for spec in config_sections():
        for item in spec.settings:
            if f"{spec.name}.{item.name}" not in _FIXED and draw(st.booleans()):
                chosen.setdefault(spec.name, {})[item.name] = draw(_valid(spec.name, item))
    return chosen


_SCALAR = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), _TEXT)
_ANY_VALUE = st.one_of(_SCALAR, st.lists(_SCALAR, max_size=3), st.dictionaries(_TEXT, _SCALAR, max_size=2))
_DECLARED_KEYS = [(spec.name, item.name) for spec in config_sections() for item in spec.settings]
_KEY_NAMES = st.one_of(
    st.sampled_from([name for _, name in _DECLARED_KEYS] + ["trusted_networks", "enabled", "port", "tls"]),
    _TEXT,
)
_TABLE_NAMES = st.one_of(st.sampled_from([spec.name for spec in config_sections()]), _TEXT)


def _toml(value: Any) -> str:
    """A value as TOML source (inline tables for dicts; tomllib reads what this writes)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return toml_value(value)  # floats: str() is TOML too, inf and -inf included


def _document(tables: dict[str, dict[str, Any]], tls_dir: Path) -> str:
    tls = {k: v for k, v in tables.get("tls", {}).items() if k not in _TLS_FILES}
    tls.update(certificate=str(tls_dir / "cert.pem"), private_key=str(tls_dir / "key.pem"))
    lines = []
    for name, table in {**tables, "tls": tls}.items():
        lines.append(f"[{toml_value(name)}]")
        lines += [f"{toml_value(k)} = {_toml(v)}" for k, v in table.items()]
    # No listener with TLS: loading the certificate (tests/test_config.py) would take most of the time
    for standard in standard_listeners().values():
        if standard.tls != "none":
            lines.append(f"[listeners.{standard.name}]\nenabled = false")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    generate_self_signed("mail.example.test", directory / "cert.pem", directory / "key.pem")
    return directory


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


@SETTINGS
@given(st.text())
@example('"\\\t\x00\x1f\x7f\U0001f600é')
def test_toml_value_writes_any_string_so_that_toml_reads_it_back(text: str) -> None:
    assert tomllib.loads(f"x = {toml_value(text)}")["x"] == text
    assert tomllib.loads(f"x = {toml_value([text, text])}")["x"] == [text, text]


@SETTINGS
@given(valid_choices())
def test_accepted_values_load_as_declared_and_the_rest_keep_their_defaults(
    tls_dir: Path, workdir: Path, chosen: dict[str, dict[str, Any]]
) -> None:
    path = workdir / "valid.toml"
    path.write_text(_document(chosen, tls_dir))
    config = load_config(path)
    assert config.warnings == ()
    for spec in config_sections():
        values: object = config.section(spec.cls)
        for item in spec.settings:
            if f"{spec.name}.{item.name}" in _FIXED:
                continue
            if item.name in chosen.get(spec.name, {}):
                expected = convert(item, chosen[spec.name][item.name], config.base_dir)
            elif item.default_factory is not None:
                continue  # the machine's host name
            else:
                expected = convert(item, item.default, config.base_dir)
            assert getattr(values, item.name) == expected, f"{spec.name}.{item.name}"


@SETTINGS
@given(st.dictionaries(_TABLE_NAMES, st.dictionaries(_KEY_NAMES, _ANY_VALUE, max_size=4), max_size=4))
@example({"server": {"user": "a\x00b"}})  # pwd.getpwnam raised ValueError: a traceback from the CLI
@example({"server": {"group": "\x00"}})
@example({"queue": {"trusted_networks": ["x"]}, "smtp": {"relay_networks": 5}})
def test_any_file_gives_a_config_or_problems_naming_its_keys(
    tls_dir: Path, workdir: Path, tables: dict[str, dict[str, Any]]
) -> None:
    path = workdir / "any.toml"
    tables.pop("listeners", None)  # its tables have their own keys (tests/test_config.py)
    path.write_text(_document(tables, tls_dir))
    written = set(tables) | {f"{name}.{key}" for name, table in tables.items() for key in table}
    error: ConfigError | None = None
    try:
        config = load_config(path)
    except ConfigError as exc:
        error = exc
    if error is not None:
        assert error.problems
        for problem in error.problems:
            assert re.sub(r"\[\d+\]$", "", problem.key) in written, problem
        return
    assert set(config.listeners) == set(standard_listeners())
    for warning in config.warnings:
        assert warning.key in written, warning
