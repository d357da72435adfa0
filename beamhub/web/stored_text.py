"""Text a service stored in English with its values inside (a session's reason, an event's message), shown in the
page's language.

Services keep such text in English (the API's words, and rows written before any translation existed); each is
made from a template marked for extraction. A page looks the text up: a message of the catalogue is translated as
it is, and a text a template with `%(name)s` fields produced is matched against that template and shown as its
translation filled with what each field matched. Text no template made is shown as it is.
"""

from __future__ import annotations

import functools
import re

from babel.messages.pofile import read_po

from beamhub.web.i18n import TRANSLATIONS_DIR, translations

FIELD = re.compile(r"%\((\w+)\)[sdr]|%%")
NUMBER_OR_REPR = re.compile(r"%\((\w+)\)[dr]")
CODE_AT_END = re.compile(r"(.+?)( \(\w+\))", re.S)
LEAST_FIXED_TEXT = 8
"""A template needs this many characters of its own words to claim a text (no "%(a)s: %(b)s")."""


def _pattern(template: str) -> re.Pattern[str]:
    """A regular expression that matches exactly the texts `template` makes, one named group per field."""
    parts, seen, at = [], set(), 0
    for field in FIELD.finditer(template):
        parts.append(re.escape(template[at:field.start()]))
        name = field.group(1)
        if name is None:
            parts.append("%")
        elif name in seen:
            parts.append(f"(?P={name})")
        else:
            parts.append(f"(?P<{name}>.+?)")
            seen.add(name)
        at = field.end()
    parts.append(re.escape(template[at:]))
    return re.compile("".join(parts), re.S)


@functools.cache
def _templates(locale: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    """The catalogue's templates with fields, most specific (longest fixed text) first, with their translation."""
    po_file = TRANSLATIONS_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not po_file.is_file():
        return ()
    with po_file.open("rb") as source:
        catalog = read_po(source, locale=locale)
    found = [(message.id, message.string) for message in catalog if isinstance(message.id, str) and message.string
             and FIELD.search(message.id) and len(FIELD.sub("", message.id)) >= LEAST_FIXED_TEXT]
    found.sort(key=lambda pair: len(FIELD.sub("", pair[0])), reverse=True)
    # a field is filled with the text it matched: a number or a repr() is already written out
    return tuple((_pattern(msgid), NUMBER_OR_REPR.sub(r"%(\1)s", msgstr)) for msgid, msgstr in found)


def translated(text: str | None, locale: str) -> str:
    """A stored English text in `locale`: its translation, filled with the values found in the text; a code in
    parentheses at its end that no template has (Slurm's reason, e.g. "waiting (Priority)") is kept as it is."""
    if not text:
        return text or ""
    found = _lookup(text, locale)
    if found is None and (coded := CODE_AT_END.fullmatch(text)):
        found = _lookup(coded.group(1), locale)
        return text if found is None else found + coded.group(2)
    return text if found is None else found


def _lookup(text: str, locale: str) -> str | None:
    """The translation of a message of the catalogue or of a text one of its templates made; None if none is."""
    gettext = translations(locale).gettext
    exact = gettext(text)
    if exact != text:
        return exact
    for pattern, translation in _templates(locale):
        match = pattern.fullmatch(text)
        if match:
            # a value may be a text a template made too (a reason inside a refusal): each is shorter than `text`
            return translation % {name: translated(value, locale) for name, value in match.groupdict().items()}
    return None
