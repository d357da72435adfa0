"""indexes for a catalogue of a billion files: visible proposals by UNION, file pages from the index alone

The proposals list reads one keyset page from each index that says who may know a proposal:
memberships by (user_id, proposal_id), staffed beamlines by (beamline, id), released proposals by a
partial index on id. On PostgreSQL the unique path index of data_files INCLUDEs the listed columns,
so a page is an index-only scan wherever the table's rows lie (SQLite keeps its index as it was).
Rebuilding that index rewrites it whole: on a large catalogue, plan the downtime (see README, Data).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

RELEASED = sa.text("embargo_released_at IS NOT NULL")
LISTED = ["parent", "size", "mtime_ns", "sha256", "tier", "registered_at", "id"]


def upgrade() -> None:
    op.drop_index("ix_proposals_beamline", "proposals")
    op.create_index("ix_proposals_beamline_id", "proposals", ["beamline", "id"])
    op.create_index("ix_proposals_released_id", "proposals", ["id"], sqlite_where=RELEASED,
                    postgresql_where=RELEASED)
    op.drop_index("ix_proposal_members_user_id", "proposal_members")
    op.create_index("ix_proposal_members_user_proposal", "proposal_members", ["user_id", "proposal_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_data_files_proposal_relpath", "data_files")
        op.create_index("ix_data_files_proposal_relpath", "data_files", ["proposal_id", "relpath"], unique=True,
                        postgresql_include=LISTED)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_data_files_proposal_relpath", "data_files")
        op.create_index("ix_data_files_proposal_relpath", "data_files", ["proposal_id", "relpath"], unique=True)
    op.drop_index("ix_proposal_members_user_proposal", "proposal_members")
    op.create_index("ix_proposal_members_user_id", "proposal_members", ["user_id"])
    op.drop_index("ix_proposals_released_id", "proposals")
    op.drop_index("ix_proposals_beamline_id", "proposals")
    op.create_index("ix_proposals_beamline", "proposals", ["beamline"])
