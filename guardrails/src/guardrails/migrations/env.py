"""Alembic's environment for guardrails.core.migrate: the connection, the target metadata and
the version table come from the Config's attributes (see guardrails.core.migrate.project)."""

from alembic import context

config = context.config
project = config.attributes["project"]


def include_object(obj, name, type_, reflected, compare_to):
    """Compare only this project's tables: guardrails' own, or the app's (never the other's)."""
    if type_ == "table" and reflected and compare_to is None:
        return project.owns(name)
    return True


def run() -> None:
    context.configure(
        connection=config.attributes["connection"],
        target_metadata=project.metadata,
        version_table=project.version_table,
        include_object=include_object,
        render_as_batch=True,  # SQLite alters tables by copying them: owners' columns work
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
