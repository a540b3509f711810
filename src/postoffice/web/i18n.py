"""Translations and locale formatting (docs/decisions/0046).

Implementation notes
- Strings go through gettext: `_("...")` in templates and code. Catalogs are the `.po` files under
  `locale/<lang>/LC_MESSAGES/messages.po`, read and compiled in memory with Babel when first used, so there is
  no build step and no compiled file to go stale.
- The language is the `lang` cookie when it names a supported one, else the best match of the request's
  Accept-Language (q-values honoured), else English. Supported: English (the source strings) and Simplified
  Chinese (`zh_CN`; "zh", "zh-CN", "zh-Hans", "zh-SG" select it).
- Dates and sizes are formatted with Babel's CLDR data for the chosen locale.
"""

from __future__ import annotations

import functools
import io
from datetime import UTC, datetime, timedelta
from importlib import resources

from babel import Locale
from babel.dates import format_date, format_datetime, format_time, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

#: language code -> its display name in its own language
LANGUAGES: dict[str, str] = {"en": "English", "zh_CN": "简体中文"}
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "lang"


@functools.cache
def translations(language: str) -> NullTranslations:
    if language == DEFAULT_LANGUAGE or language not in LANGUAGES:
        return NullTranslations()
    source = resources.files("postoffice.web").joinpath("locale", language, "LC_MESSAGES", "messages.po")
    with source.open("rb") as po:
        catalog = read_po(po, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def _normalise(tag: str) -> str | None:
    tag = tag.strip().replace("_", "-").lower()
    if not tag or tag == "*":
        return None
    if tag.startswith("zh"):
        # Traditional script or its regions are not translated yet: they get English, not Simplified Chinese
        if any(part in tag.split("-")[1:] for part in ("hant", "tw", "hk", "mo")):
            return None
        return "zh_CN"
    if tag.split("-")[0] == "en":
        return "en"
    return None


def choose_language(cookie: str | None, accept_language: str | None) -> str:
    """The page language: the cookie's if supported, else the best of Accept-Language, else English."""
    if cookie in LANGUAGES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate((accept_language or "")[:1000].split(",")[:50]):
        tag, _, params = item.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = _normalise(tag)
        if language is not None and quality > 0:
            ranked.append((-quality, index, language))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE


@functools.lru_cache(maxsize=4096)
def _time(language: str, hour: int, minute: int, second: int, form: str) -> str:
    moment = datetime(2000, 1, 1, hour, minute, second)
    return format_time(moment, format=form, locale=Locale.parse(language))


@functools.lru_cache(maxsize=4096)
def _day(language: str, year: int, month: int, day: int, form: str) -> str:
    locale = Locale.parse(language)
    moment = datetime(year, month, day)
    if form == "MMMd":
        return format_datetime(moment, format=locale.datetime_skeletons["MMMd"], locale=locale)
    return format_date(moment, format=form, locale=locale)


@functools.lru_cache(maxsize=16)
def _joiner(language: str) -> str:
    pattern = Locale.parse(language).datetime_formats["medium"]
    return str(getattr(pattern, "pattern", pattern))


class Formatter:
    """Dates and sizes for one locale (each date and time of day formatted once, then cached: a page of 50
    messages formats 100 of them)."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.locale = Locale.parse(language)

    def when(self, timestamp: float | None, now: float) -> str:
        """A message's date in a list: the time today, else the date (with the year when not this year)."""
        if timestamp is None:
            return ""
        moment = datetime.fromtimestamp(timestamp, UTC).astimezone()
        today = datetime.fromtimestamp(now, UTC).astimezone()
        if moment.date() == today.date():
            return _time(self.language, moment.hour, moment.minute, 0, "short")
        form = "MMMd" if moment.year == today.year else "medium"
        return _day(self.language, moment.year, moment.month, moment.day, form)

    def full(self, timestamp: float | None) -> str:
        if timestamp is None:
            return ""
        moment = datetime.fromtimestamp(timestamp, UTC).astimezone()
        day = _day(self.language, moment.year, moment.month, moment.day, "medium")
        clock = _time(self.language, moment.hour, moment.minute, moment.second, "medium")
        return _joiner(self.language).replace("{1}", day).replace("{0}", clock)

    def day(self, iso_day: str) -> str:
        """A calendar day written "YYYY-MM-DD" in the locale's medium form ("Jul 14, 2025", "2025年7月14日");
        the text itself when it is not one."""
        try:
            moment = datetime.strptime(iso_day, "%Y-%m-%d")
        except ValueError:
            return iso_day
        return _day(self.language, moment.year, moment.month, moment.day, "medium")

    def duration(self, seconds: float) -> str:
        """A span of time in the locale's words, rounded to its largest unit ("3 days", "62分钟")."""
        return format_timedelta(
            timedelta(seconds=max(0.0, seconds)), threshold=2, locale=self.locale, format="long"
        )

    def size(self, octets: int) -> str:
        for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
            if octets >= scale:
                return f"{format_decimal(octets / scale, format='#,##0.#', locale=self.locale)} {unit}"
        return f"{format_decimal(octets, locale=self.locale)} B"
