"""Schema migrations (Alembic): guardrails' own tables, then the app's.

Two migration histories share one database, each with its own version table:
- guardrails' tables (sessions, the audit chain, delivery cursors): the SDK's scripts in
  `guardrails/migrations/versions`, version table `guardrails_alembic_version`; template-owned,
  they arrive with a new SDK version;
- the app's own tables (`guardrails.Model` subclasses): the owner's scripts in the app's
  `migrations/versions/` folder (MICROAPP_MIGRATIONS), version table `alembic_version`.

Commands (`python -m guardrails db ...`, `make db-*`):
- `upgrade`: both histories to their newest revision (guardrails' first). This is the
  migration step of a deployment (the chart's Job runs it before the new pods start).
- `revision -m "add priority"`: compares the app's models with its migrated schema and writes
  the next revision into `migrations/versions/` (check it, commit it).
- `check`: fails when the models and the migrations disagree (a model changed without a
  revision), migrating a throw-away SQLite database to find out; `make check` and CI run it.

At start-up (`ensure_current`) the web app refuses to run on a database that is behind, with
the command that fixes it; it never creates tables silently. One exception, for laptops: a
SQLite database of an app that is not in production is upgraded at start-up (`make dev` keeps
working after a `git pull`), and the log says so.

A database made before migrations existed (tables made by `create_all`) is adopted: when the
app's version table is missing but its tables exist, the app's first revision is recorded as
applied (it describes exactly those tables), then the later ones run.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, inspect

from guardrails.core import db
from guardrails.core.settings import ConfigError

log = structlog.get_logger("guardrails.migrate")
SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"
GUARDRAILS_VERSION_TABLE = "guardrails_alembic_version"
APP_VERSION_TABLE = "alembic_version"


class DatabaseBehind(ConfigError):
    """The database's schema is older than the code: run the migrations first."""


@dataclass(frozen=True)
class Project:
    """One migration history: whose tables, where its scripts are, its version table."""

    name: str
    metadata: MetaData
    versions: Path
    version_table: str

    def owns(self, table: str) -> bool:
        """Whether a table found in the database belongs to this project."""
        ours = table.startswith("guardrails_")
        if table in (GUARDRAILS_VERSION_TABLE, APP_VERSION_TABLE):
            return False
        return ours if self.name == "guardrails" else not ours

    def config(self, connection=None) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(SCRIPTS))
        cfg.set_main_option("version_locations", str(self.versions))
        cfg.set_main_option("path_separator", "os")
        cfg.attributes["project"] = self
        cfg.attributes["connection"] = connection
        return cfg

    def heads(self) -> set[str]:
        if not self.versions.is_dir():
            return set()
        return set(ScriptDirectory.from_config(self.config()).get_heads())

    def first(self) -> str | None:
        if not self.versions.is_dir():
            return None
        bases = ScriptDirectory.from_config(self.config()).get_bases()
        return bases[0] if bases else None

    def current(self, engine: Engine) -> set[str]:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": self.version_table})
            return set(context.get_current_heads())


def guardrails_project() -> Project:
    return Project(
        "guardrails", db.GuardrailsModel.metadata, SCRIPTS / "versions", GUARDRAILS_VERSION_TABLE
    )


def app_project(migrations: Path | str = "migrations", models: str | None = "app.main") -> Project:
    """The app's history. `models` is imported first, so that its Model classes are known."""
    if models:
        try:
            importlib.import_module(models)
        except ModuleNotFoundError as exc:
            if exc.name is None or not models.startswith(exc.name):
                raise
    return Project("app", db.Model.metadata, Path(migrations) / "versions", APP_VERSION_TABLE)


def _adopt(engine: Engine, project: Project) -> None:
    """Record the app's first revision as applied on a database made by create_all (see
    above); guardrails' own first revision copes with such a database itself."""
    if project.name != "app" or project.current(engine) or not project.metadata.tables:
        return
    existing = set(inspect(engine).get_table_names())
    if not existing & set(project.metadata.tables):
        return
    first = project.first()
    if first is None:
        return
    with engine.begin() as conn:
        command.stamp(project.config(conn), first)
    log.warning(
        "adopted a database made before migrations: its tables are taken as revision "
        f"{first}; the later revisions now run",
        project=project.name,
    )


def upgrade(engine: Engine, projects: list[Project]) -> None:
    """Every project's history to its newest revision, in order."""
    for project in projects:
        if not project.heads():
            continue
        _adopt(engine, project)
        with engine.begin() as conn:
            command.upgrade(project.config(conn), "heads")
        log.info("database migrated", project=project.name, revision=sorted(project.heads()))


def behind(engine: Engine, projects: list[Project]) -> list[str]:
    """What is not at its newest revision (empty: up to date)."""
    late = []
    for project in projects:
        heads = project.heads()
        if heads and project.current(engine) != heads:
            late.append(project.name)
    return late


@contextmanager
def scratch_engine(projects: list[Project]) -> Iterator[Engine]:
    """A throw-away SQLite database migrated to the newest revision of `projects`: what the
    models are compared with, by `db check` and by `db revision` alike (never the app's own
    database, which a revision must not migrate as a side effect)."""
    with tempfile.TemporaryDirectory() as folder:
        engine = db.make_engine(f"sqlite:///{folder}/check.db")
        try:
            upgrade(engine, projects)
            yield engine
        finally:
            engine.dispose()


def differences(projects: list[Project]) -> list[str]:
    """How the models differ from what their migrations make (empty: they agree)."""
    found: list[str] = []
    with scratch_engine(projects) as engine:
        for project in projects:
            with engine.connect() as conn:
                context = MigrationContext.configure(
                    conn,
                    opts={
                        "version_table": project.version_table,
                        "include_object": _include(project),
                        "compare_type": True,
                    },
                )
                for diff in compare_metadata(context, project.metadata):
                    found.append(f"{project.name}: {_describe(diff)}")
    return found


def _include(project: Project):
    def include(obj, name, type_, reflected, compare_to):
        if type_ == "table" and reflected and compare_to is None:
            return project.owns(name)
        return True

    return include


def _describe(diff) -> str:
    if isinstance(diff, list):  # column modifications come as a list of tuples
        return "; ".join(_describe(d) for d in diff)
    kind, *rest = diff
    names = [getattr(r, "name", None) or str(r) for r in rest if r is not None]
    return f"{kind} {' '.join(str(n) for n in names[:3])}"


def revision(project: Project, message: str, engine: Engine) -> str | None:
    """Autogenerate the next revision of `project` from `engine`'s migrated schema."""
    project.versions.mkdir(parents=True, exist_ok=True)
    with engine.begin() as conn:
        cfg = project.config(conn)
        script = command.revision(cfg, message=message, autogenerate=True)
    scripts = script if isinstance(script, list) else [script]
    return scripts[0].path if scripts and scripts[0] is not None else None


def ensure_current(engine: Engine, projects: list[Project], *, may_upgrade: bool) -> None:
    """Refuse (DatabaseBehind) a database that is behind, or upgrade it when allowed."""
    late = behind(engine, projects)
    if not late:
        return
    if may_upgrade:
        log.warning(
            "the laptop database was behind: upgrading it (production never does this at "
            "start-up; it runs `python -m guardrails db upgrade` first)",
            behind=late,
        )
        upgrade(engine, projects)
        return
    raise DatabaseBehind(
        f"the database schema is behind the code ({' and '.join(late)} migrations not "
        "applied). Run the migrations first: `make db-upgrade` (or `python -m guardrails db "
        "upgrade`, the deployment's migration Job), then start the app again."
    )
