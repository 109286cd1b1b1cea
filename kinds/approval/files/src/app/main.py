"""Yours to edit. Builds the web app: guardrails first, then your routes.

`make dev` and production run `uvicorn app.main:build --factory`.
"""

from pathlib import Path

from fastapi import FastAPI

from app import retention, routes  # noqa: F401 (retention registers its hourly purge job)
from guardrails import create_app

PAGES = Path(__file__).parent / "pages"


def build(runtime=None) -> FastAPI:
    app = create_app(pages=PAGES, runtime=runtime)
    app.include_router(routes.router)
    app.include_router(routes.api)
    return app
