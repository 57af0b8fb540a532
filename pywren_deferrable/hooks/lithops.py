"""LithopsHook: the Airflow Connection of type ``lithops`` and everything that needs its secrets.

The hook owns credentials: operators and triggers only ever hold a connection id and a
secret-free :class:`~pywren_deferrable.job.JobRef`. Lithops itself is imported lazily,
on the worker, so that the triggerer (which imports this module) never loads it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from pywren_deferrable.config import (
    build_config,
    compute_backend_name,
    engine_of,
    storage_location,
)
from pywren_deferrable.connection_form import expand_form_fields, missing_compute_keys
from pywren_deferrable.extras import check_backend_modules
from pywren_deferrable.job import ENGINE_PYWREN, StorageLocation, key_layout
from pywren_deferrable.storages import storage_kind
from pywren_deferrable.sync_bridge import run_sync
from pywren_deferrable.triggers.status import StatusSource, open_status_source


class LithopsHook(BaseHook):
    """Turns an Airflow Connection into a Lithops config, executor and storage access.

    The Connection's extra is a Lithops config (sections ``lithops``, ``localhost``,
    ``ibm_cf``, ``code_engine``, ``aws_lambda``, ``ibm_cos``, ``minio``, ``ceph``,
    ``aws_s3``...). Login and password, when set, are the storage HMAC keys
    (``access_key_id`` / ``secret_access_key``); host, when set, the storage endpoint.
    With ``"engine": "pywren"`` in the extra, the extra is a pywren-ibm-cloud 1.7.3
    config instead (see :mod:`pywren_deferrable.config_pywren`).

    :param lithops_conn_id: the Airflow Connection id.
    :param executor_config: the operator's ``pywren_executor_config`` overrides.
    """

    conn_name_attr = "lithops_conn_id"
    default_conn_name = "lithops_default"
    conn_type = "lithops"
    hook_name = "Lithops (IBM PyWren)"

    def __init__(
        self, lithops_conn_id: str = default_conn_name, executor_config: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.lithops_conn_id = lithops_conn_id
        self.executor_config = executor_config or {}

    def _config_from(self, conn: Any) -> dict[str, Any]:
        return build_config(
            expand_form_fields(conn.extra_dejson),
            login=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            overrides=self.executor_config,
        )

    def _not_found(self, err: Exception) -> AirflowNotFoundException:
        env = "AIRFLOW_CONN_" + self.lithops_conn_id.upper()
        return AirflowNotFoundException(
            f"lithops_conn_id={self.lithops_conn_id!r}: no such Airflow Connection. Create a Connection "
            f"of type 'lithops' whose extra is your Lithops config (for example {env}='{{\"conn_type\": "
            f'"lithops", "extra": {{"lithops": {{"backend": "localhost"}}}}}}\') ({err})'
        )

    def get_config(self) -> dict[str, Any]:
        """The engine's config for a job (Connection + overrides, cleaner off)."""
        try:
            conn = self.get_connection(self.lithops_conn_id)
        except AirflowNotFoundException as err:
            raise self._not_found(err) from None
        return self._config_from(conn)

    async def aget_config(self) -> dict[str, Any]:
        """Like :meth:`get_config`, without blocking the event loop (for triggers)."""
        try:
            conn = await BaseHook.aget_connection(self.lithops_conn_id)
        except AirflowNotFoundException as err:
            raise self._not_found(err) from None
        return self._config_from(conn)

    def console_url_template(self) -> str | None:
        """The Connection's ``console_url`` (extra), a template for the job link, if set."""
        template = self.get_connection(self.lithops_conn_id).extra_dejson.get("console_url")
        return template if isinstance(template, str) and template else None

    def get_executor(self, config: dict[str, Any] | None = None) -> Any:
        """A Lithops ``FunctionExecutor`` (or pywren-ibm-cloud one) for the Connection."""
        config = config or self.get_config()
        if engine_of(config) == ENGINE_PYWREN:
            from pywren_deferrable.pywren_engine import create_executor

            return create_executor(config)
        import lithops

        return lithops.FunctionExecutor(config=config)

    @staticmethod
    def storage_location(config: dict[str, Any]) -> StorageLocation:
        """Where jobs submitted with ``config`` keep their objects."""
        return storage_location(config)

    async def _credentials_for(self, location: StorageLocation) -> Any:
        kind = storage_kind(location.kind)
        return kind.credentials(await self.aget_config()) if kind.needs_credentials else None

    @asynccontextmanager
    async def astatus_source(self, location: StorageLocation) -> AsyncIterator[StatusSource]:
        """Async access to a job's bucket, on the client made for its storage (shared)."""
        async with open_status_source(location, await self._credentials_for(location)) as source:
            yield source

    @asynccontextmanager
    async def status_source_from_config(
        self, location: StorageLocation, config: dict[str, Any]
    ) -> AsyncIterator[StatusSource]:
        """Like :meth:`astatus_source` with an already-resolved config (on the worker)."""
        kind = storage_kind(location.kind)
        credentials = kind.credentials(config) if kind.needs_credentials else None
        async with open_status_source(location, credentials) as source:
            yield source

    def test_connection(self) -> tuple[bool, str]:
        """Check the Connection without running a job: the config builds, the compute
        backend's section has its required keys, and the storage bucket answers."""
        try:
            config = self.get_config()
            check_backend_modules(config)
            missing = missing_compute_keys(config)
            backend = compute_backend_name(config)
            if missing:
                return False, f"the {backend!r} compute backend config lacks: {', '.join(missing)}"
            location = self.storage_location(config)
            jobs_prefix = key_layout(engine_of(config)).jobs_prefix

            async def probe() -> None:
                async with self.status_source_from_config(location, config) as source:
                    async for _page in source.list_keys(jobs_prefix + "/"):
                        break

            run_sync(probe)
        except Exception as err:  # test_connection reports, it does not raise
            return False, f"{type(err).__name__}: {err}"
        where = location.endpoint or location.root or location.backend
        return (
            True,
            f"storage bucket {location.bucket!r} reachable at {where}; {engine_of(config)} compute "
            f"backend {backend!r} configured",
        )
