"""Languages of the console: which one a request gets, its catalogue, and locale-aware formatting."""

from __future__ import annotations

import datetime as dt
import functools
import io
from pathlib import Path

from babel import Locale
from babel.dates import format_datetime, format_skeleton, get_timezone
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations
from starlette.requests import HTTPConnection

from beamhub.deps import read_cookie

LANG_COOKIE = "beamhub-lang"
DEFAULT_LOCALE = "en"
LOCALES = {"en": "English", "zh_CN": "简体中文"}
"""The console's languages, each named in itself (as the language switch shows it)."""
TRANSLATIONS_DIR = Path(__file__).with_name("translations")
SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _from_tag(tag: str) -> str | None:
    """The console locale for one Accept-Language tag: any Chinese is zh_CN, any English is en."""
    primary = tag.strip().lower().replace("_", "-").split("-")[0]
    return {"zh": "zh_CN", "en": "en"}.get(primary)


def _weight(part: str) -> float:
    for param in part.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def negotiate(accept_language: str) -> str | None:
    """The first console locale the Accept-Language header asks for, by its q-values; None if none."""
    parts = [p for p in accept_language.split(",") if p.strip()]
    ranked = sorted(parts, key=_weight, reverse=True)
    for part in ranked:
        locale = _from_tag(part.split(";")[0])
        if locale and _weight(part) > 0:
            return locale
    return None


def request_locale(connection: HTTPConnection) -> str:
    """The language switch's cookie if set, else the browser's Accept-Language, else English."""
    chosen = read_cookie(connection, LANG_COOKIE) or ""
    if chosen in LOCALES:
        return chosen
    return negotiate(connection.headers.get("accept-language", "")) or DEFAULT_LOCALE


@functools.cache
def translations(locale: str) -> NullTranslations:
    """The catalogue of a locale, compiled from its committed .po on first use (English needs none)."""
    po_file = TRANSLATIONS_DIR / locale / "LC_MESSAGES" / "messages.po"
    if locale == DEFAULT_LOCALE or not po_file.is_file():
        return NullTranslations()
    with po_file.open("rb") as source:
        catalog = read_po(source, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


class Formatter:
    """Dates, numbers, sizes and durations as people of one locale write them."""

    def __init__(self, locale: str, timezone: str) -> None:
        self.locale = Locale.parse(locale)
        self.console_locale = locale  # the console's name of it (zh_CN), as translations() takes it
        self.tz: dt.tzinfo = get_timezone(timezone)
        # NOTE: the abbreviation of "days" in a duration such as "2 d 03:04:05"
        self.day_unit = translations(locale).gettext("d")
        self.gettext = translations(locale).gettext

    def datetime(self, value: dt.datetime | None) -> str:
        return format_datetime(value, "medium", tzinfo=self.tz, locale=self.locale) if value else ""

    def clock(self, value: dt.datetime | None) -> str:
        """A time of day in the console's time zone, 16:30, with the day in front when it is not today."""
        if value is None:
            return ""
        time = format_skeleton("Hm", value, tzinfo=self.tz, locale=self.locale)
        if dt.datetime.now(self.tz).date() == value.astimezone(self.tz).date():
            return time
        return f"{format_skeleton('MMMd', value, tzinfo=self.tz, locale=self.locale)} {time}"

    def minutes(self, left: dt.timedelta) -> str:
        """A span of time in hours and minutes, as people say it: 25 min, 2 h 5 min."""
        hours, minutes = divmod(max(round(left.total_seconds() / 60), 0), 60)
        if hours:
            return self.gettext("%(hours)d h %(minutes)d min") % {"hours": hours, "minutes": minutes}
        return self.gettext("%(minutes)d min") % {"minutes": minutes}

    def number(self, value: float) -> str:
        return format_decimal(value, "#,##0.##", locale=self.locale)

    def size(self, num_bytes: int) -> str:
        """A size in binary units: 1.5 GiB."""
        value, unit = float(num_bytes), 0
        while value >= 1024 and unit < len(SIZE_UNITS) - 1:
            value, unit = value / 1024, unit + 1
        return f"{format_decimal(value, '#,##0.#', locale=self.locale)} {SIZE_UNITS[unit]}"

    def duration(self, seconds: float | dt.timedelta | None) -> str:
        """A clock-like duration, 3:04:05, with days in front when there are any: 2 d 03:04:05."""
        if seconds is None:
            return ""
        total = max(int(seconds.total_seconds() if isinstance(seconds, dt.timedelta) else seconds), 0)
        days, rest = divmod(total, 86400)
        hours, rest = divmod(rest, 3600)
        clock = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
        return f"{days} {self.day_unit} {clock}" if days else clock
