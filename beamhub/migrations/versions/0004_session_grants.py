"""sessions on their own origin: entry grants; sessions answer on Unix sockets, not ports

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import beamhub.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = beamhub.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "session_grants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("login_session_id", sa.Integer(), sa.ForeignKey("login_sessions.id", ondelete="CASCADE"),
                  nullable=True),
        sa.Column("token_id", sa.Integer(), sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_session_grants_digest", "session_grants", ["digest"], unique=True)
    op.create_index("ix_session_grants_session_id", "session_grants", ["session_id"])
    op.create_index("ix_session_grants_login_session_id", "session_grants", ["login_session_id"])
    op.create_index("ix_session_grants_token_id", "session_grants", ["token_id"])
    op.create_index("ix_session_grants_expires_at", "session_grants", ["expires_at"])
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("port")


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("port", sa.Integer(), nullable=True))
    op.drop_table("session_grants")
