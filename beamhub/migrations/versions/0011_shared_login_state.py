"""failed logins and single sign-on flows in flight move from a process's memory into the database, shared by every
worker process and replica

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from beamhub.db import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("login_failures",
                    sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("key", sa.Text(), nullable=False),
                    sa.Column("at", UTCDateTime(timezone=True), nullable=False))
    op.create_index("ix_login_failures_key_at", "login_failures", ["key", "at"])
    op.create_index("ix_login_failures_at", "login_failures", ["at"])
    op.create_table("oidc_flows",
                    sa.Column("digest", sa.String(64), primary_key=True),
                    sa.Column("state", sa.String(64), nullable=False),
                    sa.Column("nonce", sa.String(64), nullable=False),
                    sa.Column("verifier", sa.String(128), nullable=False),
                    sa.Column("next_path", sa.Text(), nullable=False),
                    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False))
    op.create_index("ix_oidc_flows_created_at", "oidc_flows", ["created_at"])


def downgrade() -> None:
    op.drop_table("oidc_flows")
    op.drop_table("login_failures")
