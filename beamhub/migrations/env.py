"""Alembic environment: runs on the connection beamhub hands it."""

from alembic import context

from beamhub.data import models as _data  # noqa: F401  (registers tables)
from beamhub.db import Base
from beamhub.identity.accounts import models as _accounts  # noqa: F401
from beamhub.identity.audit import models as _audit  # noqa: F401
from beamhub.identity.keys import models as _keys  # noqa: F401
from beamhub.identity.login import models as _login  # noqa: F401
from beamhub.jobs import models as _jobs  # noqa: F401
from beamhub.sessions import models as _sessions  # noqa: F401

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
