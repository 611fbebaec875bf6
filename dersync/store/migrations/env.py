"""Alembic environment: always run on a connection the service hands over (see store.db)."""

from alembic import context

from dersync.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
