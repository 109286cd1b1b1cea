"""Alembic's environment for guardrails.core.migrate: the connection, the target metadata and
the version table come from the Config's attributes (see guardrails.core.migrate.project)."""

from alembic import context


def include_object(obj, name, type_, reflected, compare_to):
    project = context.config.attributes["project"]
    """Compare only this project's tables: guardrails' own, or the app's (never the other's)."""
    if type_ == "table" and reflected and compare_to is None:
        return project.owns(name)
    return True


def run() -> None:
    config = context.config
    project = config.attributes["project"]
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


try:
    context.config  # noqa: B018 - set only while Alembic runs this script
except AttributeError:  # imported on its own (the SDK's import checks): nothing to migrate
    pass
else:
    run()
