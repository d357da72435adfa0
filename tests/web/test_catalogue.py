"""Every message of the console and every error's message has a Simplified Chinese translation; adding an
untranslated one fails here."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from beamhub.errors import ERROR_KEYWORDS, BeamhubError

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "beamhub" / "web"
PO = WEB / "translations" / "zh_CN" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdr]")
KEYWORDS = {**DEFAULT_KEYWORDS, **dict.fromkeys(ERROR_KEYWORDS)}
"""gettext's names and every error class: an error's first argument is the message to translate."""


def extracted() -> set[str]:
    """The msgids (singular forms) that babel.cfg finds in the console's templates and beamhub's code."""
    with (WEB / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found = extract_from_dir(str(ROOT), method_map, options_map, keywords=KEYWORDS)
    return {message if isinstance(message, str) else message[0] for _, _, message, _, _ in found}


def catalogue() -> dict[str, tuple[str, ...]]:
    with PO.open("rb") as source:
        po = read_po(source, locale="zh_CN")
    assert not [m.id for m in po if m.id and m.fuzzy], "fuzzy translations are not used: review them"
    return {(m.id if isinstance(m.id, str) else m.id[0]): (m.string if isinstance(m.string, tuple) else (m.string,))
            for m in po if m.id}


def subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in {direct} | subclasses(direct)}


def test_the_extraction_finds_the_templates_and_the_code() -> None:
    messages = extracted()
    assert {"Sign in to beamhub", "My sessions", "Start JupyterLab", "Not enough free resources"} <= messages
    assert {"no user %(username)s", "wrong username or password"} <= messages  # errors' templates, constants


def test_every_error_class_is_an_extraction_keyword() -> None:
    for path in sorted((ROOT / "beamhub").rglob("*.py")):
        if path.stem != "__main__" and (path.parent / "__init__.py").exists():  # modules of packages, no scripts
            importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
    names = {cls.__name__ for cls in subclasses(BeamhubError) | {BeamhubError}}
    assert names == set(ERROR_KEYWORDS), f"ERROR_KEYWORDS (beamhub/errors.py) must name exactly {sorted(names)}"


def built_in_place(message: ast.expr) -> bool:
    """An f-string with values or a concatenation: a message babel cannot extract, so no page can translate it."""
    return isinstance(message, ast.BinOp) and isinstance(message.op, ast.Add) or any(
        isinstance(node, ast.FormattedValue) for node in ast.walk(message))


def test_no_error_message_is_built_in_place() -> None:
    found = []
    for path in sorted((ROOT / "beamhub").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and node.args and getattr(node.func, "id", None) in ERROR_KEYWORDS
                    and built_in_place(node.args[0])):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"write these messages as templates with keyword fields (beamhub/errors.py): {found}"


def test_every_console_message_has_a_chinese_translation() -> None:
    translated = catalogue()
    missing = sorted(m for m in extracted() if not all(translated.get(m, ("",))))
    assert not missing, f"add these to {PO.relative_to(ROOT)} (see beamhub/web/README.md): {missing}"


def test_translations_keep_every_placeholder() -> None:
    for msgid, forms in catalogue().items():
        for form in forms:
            assert set(PLACEHOLDER.findall(form)) == set(PLACEHOLDER.findall(msgid)), (msgid, form)


def test_the_catalogue_holds_no_message_the_console_no_longer_uses() -> None:
    stale = sorted(set(catalogue()) - extracted())
    assert not stale, f"remove these from {PO.relative_to(ROOT)}: {stale}"


UNMARKED_ALLOWED = {"beamhub"}
"""Words a template may show as they are, in every language."""


def visible_text(template: str) -> str:
    """A template's text outside Jinja code, tags and scripts: what a page shows without translation."""
    for pattern in (r"{#.*?#}", r"{%.*?%}", r"{{.*?}}", r"<script.*?</script>", r"<[^>]+>", r"&\w+;"):
        template = re.sub(pattern, " ", template, flags=re.S)
    return template


def test_templates_show_no_text_that_is_not_marked_for_translation() -> None:
    for path in sorted((WEB / "templates").rglob("*.html")):
        words = set(re.findall(r"[^\W\d_]{2,}", visible_text(path.read_text()))) - UNMARKED_ALLOWED
        assert not words, f"{path.relative_to(ROOT)} shows unmarked text {sorted(words)}: wrap it in _()"
