"""beamline names stored normalized (lower-case, no surrounding blanks), so they compare exactly

Staff beamlines, workstations and the sessions they held were stored as typed. Proposals and jobs
need nothing: a proposal's beamline always matched ^[a-z0-9][a-z0-9-]{0,17}$ (it names its folder
and `<beamline>-staff`), and a job copies its proposal's.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _normalized(name: str) -> str:
    """beamhub.identity.schemas.beamline_name as of this revision (a migration must not change with the code)."""
    return name.strip().lower()


def upgrade() -> None:
    bind = op.get_bind()
    for name in ("workstations", "sessions"):
        table = sa.table(name, sa.column("beamline", sa.String))
        for old in bind.execute(sa.select(table.c.beamline).distinct()).scalars():
            if old is not None and old != _normalized(old):
                bind.execute(table.update().where(table.c.beamline == old).values(beamline=_normalized(old)))
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("beamlines", sa.JSON))
    for user_id, names in bind.execute(sa.select(users.c.id, users.c.beamlines)).all():
        normalized = sorted({_normalized(name) for name in names or []})
        if normalized != (names or []):
            bind.execute(users.update().where(users.c.id == user_id).values(beamlines=normalized))


def downgrade() -> None:
    """The names as typed are gone; lower-case ones work as before."""
