"""The launch and batch job forms: what a person typed, checked and turned into a SessionSpec or a JobCreate, with
messages in their language."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

from pydantic import BaseModel, Field, ValidationError

from beamhub.config import Settings
from beamhub.errors import Invalid
from beamhub.jobs.schemas import JOB_NAME_PATTERN, MAX_COMMAND, MAX_MINUTES, MAX_NODES, MAX_SCRIPT, JobCreate
from beamhub.sessions.schemas import NAME_PATTERN, SessionSpec

GIB = 2**30
MIN_MEMORY_GIB = 0.0625
"""64 MiB, the least memory a session may have."""


class LaunchForm(BaseModel):
    """The launch form's fields as text, so that a refused form comes back as it was typed."""

    kind: str = Field("jupyter", max_length=32)
    image: str = Field("", max_length=255)
    name: str = Field("", max_length=63)
    ncores: str = Field("1", max_length=32)
    memory: str = Field("2", max_length=32)
    gpus: str = Field("0", max_length=32)
    hours: str = Field("", max_length=32)
    command: str = Field("", max_length=4096)
    args: str = Field("", max_length=16384)
    partition: str = Field("", max_length=64)

    @classmethod
    def defaults(cls, settings: Settings, kind: str) -> LaunchForm:
        return cls(kind=kind, image=settings.default_image, hours=f"{settings.default_runtime / 3600:g}",
                   partition=settings.slurm_partition or "")

    def values(self) -> dict[str, str]:
        return self.model_dump()

    def to_spec(self, _: Callable[[str], str], settings: Settings) -> SessionSpec:
        """The session this form asks for; Invalid, with a translated message, for a field that is not right."""
        ncores = _number(self.ncores, _("Cores must be a number above 0, such as 2 or 0.5."), above=0)
        memory = _number(self.memory, _("Memory must be a number of GiB, at least 0.0625 (64 MiB)."),
                         above=MIN_MEMORY_GIB - 1e-9)
        gpus = _number(self.gpus, _("GPUs must be a whole number, 0 or more."), above=-1)
        hours = _number(self.hours, _("The duration must be a number of hours above 0."), above=0)
        if gpus != int(gpus):
            raise Invalid(_("GPUs must be a whole number, 0 or more."))
        if hours * 3600 > settings.max_runtime:
            limit = f"{settings.max_runtime / 3600:g}"
            raise Invalid(_("A session may last at most %(hours)s hours.") % {"hours": limit})
        if self.name.strip() and not re.match(NAME_PATTERN, self.name.strip()):
            raise Invalid(_("A name has lowercase letters, digits and dashes only, such as my-analysis."))
        try:
            args = shlex.split(self.args)
        except ValueError:
            raise Invalid(_("The arguments have an unclosed quote.")) from None
        return SessionSpec(kind=self.kind, name=self.name.strip() or None, image=self.image or None, ncores=ncores,
                           memory=int(memory * GIB), gpus=int(gpus), command=self.command.strip() or None,
                           args=args, runtime=max(int(hours * 3600), 1), partition=self.partition.strip() or None)


def _number(text: str, message: str, above: float) -> float:
    """The number in a field, if it is one and above `above`; else Invalid(message)."""
    try:
        value = float(text.strip().replace(",", "."))
    except ValueError:
        raise Invalid(message) from None
    if not value > above or value != value or value == float("inf"):
        raise Invalid(message)
    return value


class JobForm(BaseModel):
    """The batch job form's fields as text, so that a refused form comes back as it was typed."""

    name: str = Field("job", max_length=64)
    command: str = Field("", max_length=MAX_COMMAND)
    script: str = Field("", max_length=MAX_SCRIPT)
    ncores: str = Field("1", max_length=32)
    memory: str = Field("1", max_length=32)
    nodes: str = Field("1", max_length=32)
    minutes: str = Field("60", max_length=32)
    partition: str = Field("", max_length=64)

    def values(self) -> dict[str, str]:
        return self.model_dump()

    def to_job(self, _: Callable[[str], str]) -> JobCreate:
        """The job this form asks for; Invalid, with a translated message, for a field that is not right."""
        command, script = self.command.strip(), self.script.replace("\r\n", "\n").strip()
        if bool(command) == bool(script):
            raise Invalid(_("Give either a command or a script, not both."))
        if script and not script.startswith("#!"):
            raise Invalid(_("A batch script starts with a line such as #!/bin/bash."))
        if not re.match(JOB_NAME_PATTERN, self.name.strip()):
            raise Invalid(_("A job name has letters, digits, dots, dashes and underscores only, such as fit-42."))
        ncores = _whole(self.ncores, _("Cores must be a whole number from 1 to 1024."), 1, 1024)
        memory = _number(self.memory, _("Memory must be a number of GiB, at least 0.0625 (64 MiB)."),
                         above=MIN_MEMORY_GIB - 1e-9)
        nodes = _whole(self.nodes, _("Nodes must be a whole number from 1 to 64."), 1, MAX_NODES)
        minutes = _whole(self.minutes, _("The time limit must be a whole number of minutes, at least 1."), 1,
                         MAX_MINUTES)
        try:
            return JobCreate(name=self.name.strip(), command=command or None, script=script + "\n" if script else None,
                             ncores=ncores, memory=int(memory * GIB), nodes=nodes, minutes=minutes,
                             partition=self.partition or None)
        except ValidationError:
            raise Invalid(_("A field of the form is missing or not valid; go back and check it.")) from None


def _whole(text: str, message: str, least: int, most: int) -> int:
    """The whole number in a field, if it is one from `least` to `most`; else Invalid(message)."""
    value = _number(text, message, above=least - 1)
    if value != int(value) or value > most:
        raise Invalid(message)
    return int(value)
