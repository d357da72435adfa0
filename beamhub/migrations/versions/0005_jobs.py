"""batch jobs submitted to Slurm as their users, and their events

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

import beamhub.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = beamhub.db.UTCDateTime(timezone=True)
STATES = ("pending", "running", "suspended", "completing", "completed", "failed", "timeout", "out_of_memory",
          "node_fail", "cancelled", "preempted", "lost")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("slurm_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("partition", sa.String(64), nullable=True),
        sa.Column("script", sa.Text(), nullable=True),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("ncores", sa.Integer(), nullable=False),
        sa.Column("memory", sa.BigInteger(), nullable=False),
        sa.Column("nodes", sa.Integer(), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("proposal", sa.String(64), nullable=True),
        sa.Column("beamline", sa.String(64), nullable=True),
        sa.Column("state", sa.Enum(*STATES, name="jobstate", native_enum=False, length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("node", sa.String(255), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("output_path", sa.Text(), nullable=False),
        sa.Column("error_path", sa.Text(), nullable=False),
        sa.Column("submitted_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_user_id", "jobs", ["user_id"])
    op.create_index("ix_jobs_slurm_id", "jobs", ["slurm_id"])
    op.create_index("ix_jobs_beamline", "jobs", ["beamline"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id"])


def downgrade() -> None:
    op.drop_table("job_events")
    op.drop_table("jobs")
