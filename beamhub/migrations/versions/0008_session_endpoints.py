"""sessions know where they answer and where they were placed: a node's host and port, the per-session TLS
certificate the proxy pins, the partition and node count asked for, and what the backend last said of them

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("port", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("tls_cert", sa.Text(), nullable=True))
        batch.add_column(sa.Column("partition", sa.String(64), nullable=True))
        batch.add_column(sa.Column("nodes", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("placement", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for name in ("placement", "nodes", "partition", "tls_cert", "port", "host"):
            batch.drop_column(name)
