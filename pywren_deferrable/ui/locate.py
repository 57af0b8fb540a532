"""Find a task instance's job(s) in the metadata DB (on the api-server).

Three places say which job a task instance ran, and each covers a case the others miss:

* the job records the operators and the sensor push (:mod:`.record`): every job of the
  try, while deferred and after the task ended, failed or not;
* the kwargs of the trigger the task is deferred on: the job of a task that pushed no
  record (one deferred by a version of the provider without the tab);
* the task's ``return_value`` when it is a JobRef (``wait_for_result=False``).

Synchronous (SQLAlchemy): the app calls it in a worker thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pywren_deferrable.job import JobRef
from pywren_deferrable.ui.record import XCOM_KEY_PREFIX, JobRecord

log = logging.getLogger(__name__)


class TaskInstanceNotFound(LookupError):
    """No such task instance."""


# A task instance in one of these states will not write to its job any more.
ENDED_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


@dataclass(frozen=True)
class TaskJobs:
    """The jobs of a task instance, and whether the task instance has ended."""

    records: list[JobRecord]
    ended: bool


def _record_from_trigger(kwargs: Any) -> JobRecord | None:
    if not isinstance(kwargs, dict) or not isinstance(kwargs.get("lithops_conn_id"), str):
        return None
    job = kwargs.get("job")
    if not isinstance(job, dict):
        return None
    try:
        return JobRecord(JobRef.from_dict(job), kwargs["lithops_conn_id"])
    except (TypeError, ValueError):
        return None


def _record_from_return_value(value: Any, conn_id: str | None) -> JobRecord | None:
    if not conn_id or not isinstance(value, dict) or "executor_id" not in value:
        return None
    try:
        return JobRecord(JobRef.from_dict(value), conn_id)
    except (TypeError, ValueError):
        return None


def find_job_records(dag_id: str, run_id: str, task_id: str, map_index: int) -> TaskJobs:
    """The jobs of one task instance's latest try, oldest first (duplicates merged).

    :raises TaskInstanceNotFound: when the task instance does not exist.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalar(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == map_index,
            )
        )
        if ti is None:
            raise TaskInstanceNotFound(f"no task instance {dag_id}/{run_id}/{task_id}[{map_index}]")
        ended = str(ti.state) in ENDED_STATES
        rows = session.scalars(
            select(XComModel)
            .where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.map_index == map_index,
                XComModel.key.startswith(XCOM_KEY_PREFIX, autoescape=True),
            )
            .order_by(XComModel.timestamp)
        ).all()
        found: list[JobRecord] = []
        for row in rows:
            try:
                found.append(JobRecord.from_dict(XComModel.deserialize_value(row)))
            except ValueError as err:
                log.warning("ignoring the unreadable job record %s of %s: %s", row.key, task_id, err)
        conn_id = found[0].lithops_conn_id if found else None
        if ti.trigger_id is not None:
            trigger = session.get(Trigger, ti.trigger_id)
            record = _record_from_trigger(trigger.kwargs if trigger is not None else None)
            if record is not None:
                found.append(record)
                conn_id = conn_id or record.lithops_conn_id
        returned = session.scalar(
            select(XComModel).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.map_index == map_index,
                XComModel.key == "return_value",
            )
        )
        if returned is not None:
            record = _record_from_return_value(XComModel.deserialize_value(returned), conn_id)
            if record is not None:
                found.append(record)
    unique: dict[tuple[str, tuple[str, ...]], JobRecord] = {}
    for record in found:
        key = (record.job.executor_id, record.job.job_ids)
        unique.setdefault(key, record)  # the operator's own record first: it knows the memory
    return TaskJobs(list(unique.values()), ended)
