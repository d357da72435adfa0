"""data catalogue: proposals, members, datasets, files

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import beamhub.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = beamhub.db.UTCDateTime(timezone=True)
PATH = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "proposals",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("beamline", sa.String(24), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("beamtime_start", TS, nullable=False),
        sa.Column("beamtime_end", TS, nullable=False),
        sa.Column("embargo_until", TS, nullable=True),
        sa.Column("embargo_released_at", TS, nullable=True),
        sa.Column("acl_version", sa.Integer(), nullable=False),
        sa.Column("acl_applied_version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_proposals_beamline", "proposals", ["beamline"])
    op.create_index("ix_proposals_embargo_until", "proposals", ["embargo_until"])
    op.create_index("ix_proposals_embargo_released_at", "proposals", ["embargo_released_at"])
    op.create_table(
        "proposal_members",
        sa.Column("proposal_id", sa.String(16), sa.ForeignKey("proposals.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.Enum("pi", "member", name="memberrole", native_enum=False, length=16), nullable=False),
        sa.Column("added_at", TS, nullable=False),
    )
    op.create_index("ix_proposal_members_user_id", "proposal_members", ["user_id"])
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("proposal_id", sa.String(16), sa.ForeignKey("proposals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("file_count", sa.BigInteger(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_datasets_proposal_name", "datasets", ["proposal_id", "name"], unique=True)
    op.create_table(
        "data_files",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("proposal_id", sa.String(16), sa.ForeignKey("proposals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("relpath", PATH, nullable=False),
        sa.Column("parent", PATH, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("registered_at", TS, nullable=False),
    )
    op.create_index("ix_data_files_proposal_relpath", "data_files", ["proposal_id", "relpath"], unique=True)
    op.create_index("ix_data_files_proposal_parent", "data_files", ["proposal_id", "parent"])


def downgrade() -> None:
    op.drop_table("data_files")
    op.drop_table("datasets")
    op.drop_table("proposal_members")
    op.drop_table("proposals")
