"""The Airflow plugin that adds the "Lithops job" tab, registered by the provider itself.

Registered through the ``airflow.plugins`` entry point (pyproject.toml), which Airflow
reads on every component whatever ``[core] lazy_discover_providers`` says (a provider's
``plugins`` metadata is only read when providers are discovered eagerly). Airflow 3 mounts
``fastapi_apps`` on the api-server and shows an ``external_views`` entry whose
``destination`` is ``task_instance`` as a tab of the task-instance page: an iframe on
``href`` with ``{DAG_ID}``, ``{RUN_ID}``, ``{TASK_ID}`` and ``{MAP_INDEX}`` filled in.

Every component loads plugins (the scheduler, the triggerer, task processes...), but only
the api-server serves the app: it is built on its first request, so that no other
process imports the API server's auth code or FastAPI for it.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.plugins_manager import AirflowPlugin

TAB_NAME = "Lithops job"
URL_PREFIX = "/pywren-deferrable"


class LazyJobViewApp:
    """An ASGI app that builds :func:`pywren_deferrable.ui.app.create_app` on first use."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from pywren_deferrable.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class LithopsJobPlugin(AirflowPlugin):
    """The "Lithops job" tab: its FastAPI app and its task-instance view."""

    name = "pywren_deferrable_job_view"
    fastapi_apps = [{"app": LazyJobViewApp(), "url_prefix": URL_PREFIX, "name": TAB_NAME}]
    external_views = [
        {
            "name": TAB_NAME,
            "href": f"{URL_PREFIX}/job?dag_id={{DAG_ID}}&run_id={{RUN_ID}}&task_id={{TASK_ID}}"
            "&map_index={MAP_INDEX}",
            "destination": "task_instance",
            "url_route": "lithops_job",
        }
    ]
