"""Settings declared once: a config section is a frozen dataclass whose fields say everything about a setting.

Implementation notes
- A section is a frozen dataclass decorated with `@section("name")`; each field is declared with
  `setting(...)`: its default (the value written by `postoffice init`), the comment line above it in that
  file, the longer text of its row in docs/configuration.md, and its constraints (choices, a lower bound, a
  check of the value).
  The field's type decides what TOML accepts: `int` (an integer), `float` (any number), `bool`, `str` (a
  string; with `choices`, one of them), `Path` (a non-empty string, relative to the config file's directory)
  and `tuple[str, ...]` (an array of strings). Validation, the default file and the documentation tables are
  all derived from this one declaration (`postoffice.config`, `postoffice.config_doc`), so they cannot drift.
- Each package declares the sections it uses in its own small `settings.py`, which imports nothing heavy:
  `postoffice.config` imports every declaration to validate a file, and the command line loads the config
  for every command.
- A renamed setting keeps its old name as a deprecated alias (`renamed_from`): a file using the old name
  still works the same, with a warning that names the new one (docs/decisions/0033).
- Checking a value never stops at the first problem: problems go to a `Collector` with the dotted key they
  are about (`smtp.max_errors`), so that the administrator sees every problem of a file at once.
- This module imports nothing from postoffice.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: A check of a value that has the right type: None when it is good, else (message, hint).
Check = Callable[[Any], "tuple[str, str] | None"]

_METADATA_KEY = "postoffice.setting"


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration. `key` is dotted (`listeners.smtp.port`); for a file that
    cannot be read or parsed it is the file name, and `line` is set for syntax errors."""

    key: str
    message: str
    hint: str = ""
    line: int | None = None

    def __str__(self) -> str:
        text = f"{self.key}: {self.message}" if self.key else self.message
        return f"{text} (hint: {self.hint})" if self.hint else text


class Collector:
    """The problems (the server will not start) and warnings (it will) found so far."""

    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []
        self.warnings: list[ConfigProblem] = []

    def problem(self, key: str, message: str, hint: str = "") -> None:
        self.problems.append(ConfigProblem(key, message, hint))

    def warning(self, key: str, message: str, hint: str = "") -> None:
        self.warnings.append(ConfigProblem(key, message, hint))


@dataclass(frozen=True)
class Setting:
    """Everything known about one setting. `kind` is "str" | "path" | "choice" | "int" | "number" | "bool" |
    "list" (of strings); sections derive it from the field's type."""

    name: str
    kind: str
    default: Any
    #: The comment line above the setting in the file `postoffice init` writes.
    comment: str
    #: Its row in docs/configuration.md (the comment when empty).
    doc: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None  # inclusive lower bound for numbers
    positive: bool = False  # numbers must be > 0
    #: Further check of a value of the right type (for a list: of each item).
    check: Check | None = None
    #: Applied to a good value before it is stored (e.g. lowercasing a host name).
    normalize: Callable[[Any], Any] | None = None
    #: The value when the file does not name the setting, computed at load time (e.g. the machine's name).
    default_factory: Callable[[], Any] | None = None
    #: What docs/configuration.md shows as the default when `default_factory` computes it.
    doc_default: str = ""
    #: A string setting that names a file: relative to the config file's directory ("" stays "").
    file: bool = False
    #: Dotted names this setting had before ("queue.trusted_networks"): read, with a warning.
    renamed_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    """A declared section: its name in the file, its dataclass and its settings in declaration order."""

    name: str
    cls: type
    settings: tuple[Setting, ...]

    def setting(self, name: str) -> Setting:
        for setting in self.settings:
            if setting.name == name:
                return setting
        raise KeyError(name)


def setting(
    default: Any,
    comment: str,
    *,
    doc: str = "",
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    positive: bool = False,
    check: Check | None = None,
    normalize: Callable[[Any], Any] | None = None,
    default_factory: Callable[[], Any] | None = None,
    doc_default: str = "",
    file: bool = False,
    renamed_from: tuple[str, ...] = (),
) -> Any:
    """A dataclass field that declares a setting (see the module notes). `default` is also the dataclass
    default, and the value `postoffice init` writes; write it as it should appear in the file (300, not
    300.0: numbers are converted when the file is loaded)."""
    info = {
        "comment": comment,
        "doc": doc,
        "choices": choices,
        "minimum": minimum,
        "positive": positive,
        "check": check,
        "normalize": normalize,
        "default_factory": default_factory,
        "doc_default": doc_default,
        "file": file,
        "renamed_from": renamed_from,
    }
    return dataclasses.field(default=default, metadata={_METADATA_KEY: info})


_SECTIONS: dict[type, Section] = {}


def section(name: str) -> Callable[[type[T]], type[T]]:
    """Register a dataclass (decorated with `@dataclass(frozen=True)` below this) as the section `[name]`."""

    def register(cls: type[T]) -> type[T]:
        hints = typing.get_type_hints(cls)
        settings = []
        for item in dataclasses.fields(cls):  # type: ignore[arg-type]
            info = item.metadata.get(_METADATA_KEY)
            if info is None:
                raise TypeError(f"{cls.__name__}.{item.name} is not declared with setting()")
            kind = _kind(hints[item.name], bool(info["choices"]), f"{cls.__name__}.{item.name}")
            settings.append(Setting(name=item.name, kind=kind, default=item.default, **info))
        _SECTIONS[cls] = Section(name, cls, tuple(settings))
        return cls

    return register


def declared(cls: type) -> Section:
    """The section declaration of a class registered with `@section`."""
    return _SECTIONS[cls]


def _kind(annotation: Any, has_choices: bool, where: str) -> str:
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "number"
    if annotation is str:
        return "choice" if has_choices else "str"
    if annotation is Path:
        return "path"
    if typing.get_origin(annotation) is tuple and typing.get_args(annotation) == (str, ...):
        return "list"
    raise TypeError(f"{where}: settings of type {annotation!r} are not supported")


# -- checking values -----------------------------------------------------------------------------------------


def network_problem(value: str) -> tuple[str, str] | None:
    """The check of a setting that lists networks (an address or address/prefix): the problem and a hint."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f'"{value}" is not a network', 'write "192.0.2.0/24"'
    return None


def did_you_mean(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f'did you mean "{matches[0]}"?' if matches else ""


def type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def check_value(setting: Setting, key: str, value: Any, out: Collector) -> bool:
    """True when `value` (as TOML gave it) is acceptable for `setting`; otherwise records a problem."""
    kind = setting.kind
    if kind in ("str", "path", "choice"):
        if not isinstance(value, str):
            out.problem(
                key,
                f"expected a string, got {type_name(value)}",
                f'write it in quotes: {key.rsplit(".")[-1]} = "..."',
            )
            return False
        if kind == "path" and not value.strip():
            out.problem(key, "must not be empty", f"the default is {json.dumps(str(setting.default))}")
            return False
        if kind == "path" or (setting.file and value):
            if "\x00" in value:
                out.problem(key, "must not contain a NUL character", "write the path of a file or directory")
                return False
            try:
                Path(value).expanduser()
            except RuntimeError:  # "~name" of no user, or "~" without a home directory
                home = value.split("/", 1)[0]
                why = f"cannot expand {home!r}: no such user or home directory"
                out.problem(key, why, "write a full path")
                return False
        if kind == "choice" and value not in setting.choices:
            close = did_you_mean(value, setting.choices)
            options = " | ".join(f'"{c}"' for c in setting.choices)
            out.problem(key, f'"{value}" is not one of {options}', close or f"use one of {options}")
            return False
    elif kind == "list":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            out.problem(key, f"expected a list of strings, got {type_name(value)}", 'write ["a", "b"]')
            return False
        if setting.check is not None:
            good = True
            for index, item in enumerate(value):
                found = setting.check(item)
                if found is not None:
                    out.problem(f"{key}[{index}]", *found)
                    good = False
            return good
        return True
    elif kind == "bool":
        if not isinstance(value, bool):
            out.problem(
                key, f"expected true or false, got {type_name(value)}", "write true or false without quotes"
            )
            return False
    elif kind in ("int", "number"):
        ok_type = isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            wanted = "an integer" if kind == "int" else "a number"
            out.problem(key, f"expected {wanted}, got {type_name(value)}", "write the number without quotes")
            return False
        if setting.positive and value <= 0:
            out.problem(key, f"must be greater than 0, got {value}", f"the default is {setting.default}")
            return False
        if setting.minimum is not None and value < setting.minimum:
            out.problem(
                key, f"must be at least {setting.minimum}, got {value}", f"the default is {setting.default}"
            )
            return False
    else:  # pragma: no cover - a declaration error, caught by `section`
        raise AssertionError(f"unknown setting kind {kind}")
    if setting.check is not None:
        found = setting.check(value)
        if found is not None:
            out.problem(key, *found)
            return False
    return True


def convert(setting: Setting, value: Any, base_dir: Path) -> Any:
    """A checked TOML value as the section's dataclass holds it."""
    if setting.normalize is not None:
        value = setting.normalize(value)
    if setting.kind == "number":
        return float(value)
    if setting.kind == "list":
        return tuple(value)
    if setting.kind == "path":
        return resolve_path(base_dir, str(value))
    if setting.file and value:
        return str(resolve_path(base_dir, value))
    return value


def resolve_path(base_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


# -- writing values ------------------------------------------------------------------------------------------


def toml_value(value: object) -> str:
    """`value` as TOML source (settings hold booleans, numbers, strings, paths and arrays of strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return "[" + ", ".join(_toml_string(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_string(text: str) -> str:
    """A TOML basic string (TOML 1.0 "String"): quote, backslash and control characters other than tab
    escaped; everything else as it is (JSON's \\uXXXX surrogate pairs are not valid TOML)."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif (char < " " and char != "\t") or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)
