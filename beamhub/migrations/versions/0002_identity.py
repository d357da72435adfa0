"""identity: roles, state, groups, token scopes, SSH keys, login sessions, audit log, session beamlines

Revision ID: 0002
Revises: 0001
"""

import json

import sqlalchemy as sa
from alembic import op

import beamhub.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = beamhub.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("gid", sa.Integer(), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_groups_name", "groups", ["name"], unique=True)
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.Integer(), sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("ix_group_members_user_id", "group_members", ["user_id"])
    _move_groups_and_admins()
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("display_name", sa.String(128), nullable=False, server_default=""))
        batch.add_column(sa.Column("email", sa.String(255), nullable=False, server_default=""))
        batch.add_column(sa.Column("roles", sa.JSON(), nullable=False, server_default='["user"]'))
        batch.add_column(sa.Column("beamlines", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("state", sa.Enum("active", "disabled", name="userstate", native_enum=False,
                                                    length=16), nullable=False, server_default="active"))
        batch.add_column(sa.Column("password_hash", sa.String(255), nullable=True))
    _set_admin_roles()
    with op.batch_alter_table("users") as batch:
        batch.drop_column("groups")
        batch.drop_column("is_admin")
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("scopes", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("revoked_at", TS, nullable=True))
        batch.add_column(sa.Column("last_used_at", TS, nullable=True))
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("beamline", sa.String(64), nullable=True))
        batch.create_index("ix_sessions_beamline", ["beamline"])
    op.create_table(
        "ssh_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("algorithm", sa.String(64), nullable=False),
        sa.Column("bits", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("comment", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_ssh_keys_user_id", "ssh_keys", ["user_id"])
    op.create_index("ix_ssh_keys_user_fingerprint", "ssh_keys", ["user_id", "fingerprint"], unique=True)
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
    )
    op.create_index("ix_login_sessions_digest", "login_sessions", ["digest"], unique=True)
    op.create_index("ix_login_sessions_user_id", "login_sessions", ["user_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_actor_at", "audit_events", ["actor", "at"])
    op.create_index("ix_audit_events_address_at", "audit_events", ["address", "at"])
    op.create_index("ix_audit_events_action_at", "audit_events", ["action", "at"])


def _move_groups_and_admins() -> None:
    """The old JSON list of group names becomes rows of groups and memberships."""
    import grp

    bind = op.get_bind()
    users = bind.execute(sa.text("SELECT id, groups FROM users")).fetchall()
    gids: dict[str, int] = {}
    for user_id, groups in users:
        names = json.loads(groups) if isinstance(groups, str) else (groups or [])
        for name in names:
            if name not in gids:
                try:
                    gid = grp.getgrnam(name).gr_gid
                except KeyError:
                    continue
                created = beamhub.db.utcnow()
                insert = sa.text("INSERT INTO groups (name, gid, description, created_at) VALUES (:n, :g, '', :c)")
                bind.execute(insert.bindparams(sa.bindparam("c", type_=TS)), {"n": name, "g": gid, "c": created})
                gids[name] = gid
            group_id = bind.execute(sa.text("SELECT id FROM groups WHERE name = :n"), {"n": name}).scalar_one()
            bind.execute(sa.text("INSERT INTO group_members (group_id, user_id) VALUES (:g, :u)"),
                         {"g": group_id, "u": user_id})


def _set_admin_roles() -> None:
    op.get_bind().execute(sa.text("UPDATE users SET roles = '[\"user\", \"admin\"]' WHERE is_admin"))


def downgrade() -> None:
    raise NotImplementedError("beamhub does not downgrade identity data")
