"""What a page shows untranslated: the words of the catalogue's English messages left on a page of another
language."""

from __future__ import annotations

import functools
import html
import re
from html.parser import HTMLParser
from pathlib import Path

from babel.messages.pofile import read_po

PO = Path(__file__).resolve().parents[2] / "beamhub/web/translations/zh_CN/LC_MESSAGES/messages.po"
FIELD = re.compile(r"%\(\w+\)[sdr]")
SHOWN_ATTRIBUTES = {"placeholder", "title", "aria-label", "alt"}
LEAST_WORDS = 3
"""A message without fields of this many words, found anywhere in a text, is that message left in English; a
shorter one counts only where it is a whole text (a button, a heading), so a user's own value never does. A
message with fields counts where its words appear around any values, if it has two words of its own."""


@functools.cache
def english_messages() -> tuple[tuple[str, re.Pattern[str], int], ...]:
    """Each catalogue message whose translation differs: (message, what finds it in a text, its own words)."""
    with PO.open("rb") as source:
        catalog = read_po(source, locale="zh_CN")
    found = []
    for message in catalog:
        if isinstance(message.id, str) and message.id and message.string and message.string != message.id:
            english = " ".join(message.id.replace("%%", "%").split())
            parts = FIELD.split(english)
            words = sum(len(part.split()) for part in parts)
            finder = ".+?".join(re.escape(part) for part in parts) if len(parts) > 1 else re.escape(english)
            found.append((english, re.compile(finder), words))
    return tuple(found)


class _Texts(HTMLParser):
    """The texts a page shows: its text between tags (no script or style) and the attributes people read."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        shown = dict(attrs)
        self.texts += [value for name, value in attrs if name in SHOWN_ATTRIBUTES and value]
        if tag == "input" and shown.get("type") in ("submit", "button") and shown.get("value"):
            self.texts.append(shown["value"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden = max(self._hidden - 1, 0)

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.texts.append(data)


def shown_texts(page: str) -> list[str]:
    """The page's texts, each with its white space collapsed."""
    parser = _Texts()
    parser.feed(page)
    return [" ".join(html.unescape(text).split()) for text in parser.texts]


def untranslated(page: str) -> list[str]:
    """The page's texts that show a catalogue message in English (empty on a page fully in another language)."""
    left = []
    for text in shown_texts(page):
        for english, finder, words in english_messages():
            fields = FIELD.search(english) is not None
            whole = text.strip(" .:;,()") == english.strip(" .:;,()")
            if whole or (words >= (2 if fields else LEAST_WORDS) and finder.search(text)):
                left.append(f"{text!r} shows {english!r}")
                break
    return left
