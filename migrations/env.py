"""Alembic environment: migrations run on a connection that server.db hands over."""

from __future__ import annotations

from alembic import context

from server.models import Base

target_metadata = Base.metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `hoinghi migrate`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
