"""An audit event's details as fields people read: a label each, changes as "from → to", lists joined, sizes in
binary units; never JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from beamhub.errors import N_
from beamhub.web import stored_text
from beamhub.web.i18n import Formatter

FIELD_NAMES = {
    "user": N_("user"), "uid": N_("UID"), "gid": N_("GID"), "roles": N_("roles"), "groups": N_("groups"),
    "beamline": N_("beamline"), "beamlines": N_("beamlines"), "method": N_("sign-in method"), "reason": N_("reason"),
    "changes": N_("changes"), "changed": N_("changed"), "name": N_("name"), "kind": N_("kind"),
    "ncores": N_("cores"), "memory": N_("memory"), "gpus": N_("GPUs"), "source_ip": N_("workstation address"),
    "token_id": N_("token number"), "token_name": N_("token"), "scopes": N_("scopes"), "expires_at": N_("expires"),
    "fingerprint": N_("key fingerprint"), "role": N_("role"), "members": N_("members"), "path": N_("path"),
    "tier": N_("tier"), "from_tier": N_("from tier"), "to_tier": N_("to tier"), "added": N_("added"),
    "updated": N_("updated"), "removed": N_("removed"), "refused": N_("refused"), "slurm_id": N_("Slurm job"),
    "partition": N_("partition"), "minutes": N_("minutes"), "state": N_("state"),
}
"""Labels of the detail keys the services record; another key shows as its own name."""

VALUE_NAMES = {
    "roles": {"user": N_("user"), "staff": N_("beamline staff"), "admin": N_("administrator"),
              "service": N_("service account")},
    "role": {"pi": N_("principal investigator"), "member": N_("member")},
    "method": {"password": N_("password"), "oidc": N_("single sign-on")},
    "kind": {"jupyter": N_("JupyterLab"), "command": N_("Command"), "desktop": N_("Linux desktop"),
             "terminal": N_("Web terminal"), "ssh": N_("SSH (VS Code Remote)"), "raycluster": N_("Ray cluster")},
    "state": {"active": N_("active"), "disabled": N_("disabled")},
    "reason": {"credentials": N_("wrong username or password"), "disabled": N_("account disabled"),
               "no such user": N_("no such user")},
}
"""Names people read for the values of a detail that the services record as words of their own."""


def detail_fields(detail: dict[str, Any], _: Callable[[str], str], fmt: Formatter) -> list[tuple[str, str]]:
    """(label, value) of each detail that says something, in label order."""
    fields = [(_label(key, _), _value(key, value, _, fmt)) for key, value in detail.items()
              if value not in (None, "", [], {})]
    return sorted(fields)


def _label(key: str, _: Callable[[str], str]) -> str:
    return _(FIELD_NAMES[key]) if key in FIELD_NAMES else key.replace("_", " ")


def _value(key: str, value: Any, _: Callable[[str], str], fmt: Formatter) -> str:
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, dict):
        if set(value) == {"from", "to"}:
            return f"{_value(key, value['from'], _, fmt) or '–'} → {_value(key, value['to'], _, fmt) or '–'}"
        return "; ".join(f"{_label(k, _)}: {_value(k, v, _, fmt)}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ", ".join(_value(key, item, _, fmt) for item in value)
    if key == "memory" and isinstance(value, int):
        return fmt.size(value)
    if value is None:
        return ""
    if value in VALUE_NAMES.get(key, {}):
        return _(VALUE_NAMES[key][value])
    return stored_text.translated(value, fmt.console_locale) if key == "reason" else str(value)
