"""The tab's FastAPI app, mounted on the Airflow api-server by :mod:`.plugin`.

``GET /job`` is the page the tab shows, ``GET /api/job`` the same figures as JSON; both
take the task instance as ``dag_id``, ``run_id``, ``task_id``, ``map_index``. Both go
through Airflow's own auth: the core API's ``requires_access_dag`` dependency (GET on the
DAG's task instances), which resolves the user from the UI's session cookie or a bearer
token and asks the configured auth manager. No login: 401; no right to read that DAG: 403.

Storage is read with the credentials of the task's Connection, here on the api-server;
they are used to sign requests and never leave this process.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse

from pywren_deferrable.config import compute_backend_name
from pywren_deferrable.hooks.lithops import LithopsHook
from pywren_deferrable.pricing import Price, price_for
from pywren_deferrable.ui.locate import TaskInstanceNotFound, find_job_records
from pywren_deferrable.ui.reader import JobCache, JobCalls, SourceOpener
from pywren_deferrable.ui.record import JobRecord
from pywren_deferrable.ui.render import PAGE_SIZE, JobPanel, render_page, view_json

log = logging.getLogger(__name__)

# How long a request waits for a refresh under way before it answers with what is read.
ANSWER_BUDGET = 0.75


def _map_index(raw: str) -> int:
    # The UI leaves "{MAP_INDEX}" unreplaced on the page of a task that is not mapped.
    if raw in ("", "{MAP_INDEX}"):
        return -1
    try:
        return int(raw)
    except ValueError:
        raise HTTPException(422, f"map_index must be an integer, got {raw!r}") from None


def _opener(record: JobRecord) -> SourceOpener:
    hook = LithopsHook(lithops_conn_id=record.lithops_conn_id)
    return lambda: hook.astatus_source(record.job.storage)


async def _price(record: JobRecord) -> tuple[Price | None, str | None, str | None]:
    """The price of the record's backend, the backend, and a note when it is unknown."""
    try:
        hook = LithopsHook(lithops_conn_id=record.lithops_conn_id)
        from airflow.sdk import BaseHook

        conn = await BaseHook.aget_connection(record.lithops_conn_id)
        backend = record.compute_backend or compute_backend_name(hook._config_from(conn))
        return price_for(backend, conn.extra_dejson), backend, None
    except Exception as err:  # the cost is a convenience: show why it is missing
        return None, record.compute_backend, f"no cost estimate: {type(err).__name__}: {err}"[:300]


def create_app(cache: JobCache | None = None, budget: float = ANSWER_BUDGET) -> FastAPI:
    """The app; ``cache`` holds the jobs viewed (one per api-server process)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    jobs = cache or JobCache()
    app = FastAPI(title="Lithops job", docs_url=None, redoc_url=None, openapi_url=None)
    can_read = [Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))]

    async def panels_of(dag_id: str, run_id: str, task_id: str, map_index: int) -> list[JobPanel]:
        try:
            task_jobs = await asyncio.to_thread(find_job_records, dag_id, run_id, task_id, map_index)
        except TaskInstanceNotFound as err:
            raise HTTPException(404, str(err)) from None
        found: list[tuple[JobRecord, JobCalls, Price | None, str | None]] = []
        for record in task_jobs.records:
            price, backend, note = await _price(record)
            if backend and not record.compute_backend:
                record = JobRecord(record.job, record.lithops_conn_id, record.runtime_memory, backend)
            for job_id in record.job.job_ids:
                found.append((record, jobs.get(record.job, job_id), price, note))
        await asyncio.gather(*(calls.update(_opener(record), budget) for record, calls, _, _ in found))
        # Panels after the update: each takes its snapshot of the calls when built.
        panels = [
            JobPanel(record, calls, price, note, gone=task_jobs.ended and calls.empty and not calls.loading)
            for record, calls, price, note in found
        ]
        return panels

    @app.get("/job", response_class=HTMLResponse, dependencies=can_read)
    async def job_page(
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: str = "-1",
        offset: int = Query(0, ge=0),
    ) -> HTMLResponse:
        index = _map_index(map_index)
        panels = await panels_of(dag_id, run_id, task_id, index)
        page_url = "?" + urlencode(
            {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": index}
        )
        message = None if panels else "This task has not submitted a Lithops job (yet)."
        title = f"Lithops job of {task_id}"
        return HTMLResponse(
            render_page(panels, title=title, offset=offset, page_url=page_url, message=message),
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/api/job", dependencies=can_read)
    async def job_json(
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: str = "-1",
        offset: int = Query(0, ge=0),
        limit: int = Query(PAGE_SIZE, ge=1, le=10_000),
    ) -> dict[str, Any]:
        panels = await panels_of(dag_id, run_id, task_id, _map_index(map_index))
        return view_json(panels, offset, limit)

    return app
