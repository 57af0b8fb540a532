"""What a task records about its job for the "Lithops job" tab (pure, no Airflow import).

The operator pushes one small XCom per submitted job, under a key of its own
(:func:`job_xcom_key`: a map-reduce with ``reducer_wait_local`` submits two jobs), at
submission: the tab then finds the job while the task is deferred and after it ended,
whatever its state. The value is secret-free: the JobRef, the Connection's id (the
api-server reads the Connection itself), and the memory and compute backend the cost
estimate needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pywren_deferrable.job import JobRef

XCOM_KEY_PREFIX = "lithops_job:"


def job_xcom_key(job: JobRef) -> str:
    """The XCom key under which a task records ``job`` (one per job it submits)."""
    return f"{XCOM_KEY_PREFIX}{job.executor_id}:{'+'.join(job.job_ids)}"


@dataclass(frozen=True)
class JobRecord:
    """A task's job, as the tab needs it.

    :param job: the job.
    :param lithops_conn_id: the Connection that reaches its storage.
    :param runtime_memory: the memory of each call, MB, if known (for the cost).
    :param compute_backend: the Lithops compute backend that runs it, if known.
    """

    job: JobRef
    lithops_conn_id: str
    runtime_memory: float | None = None
    compute_backend: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The XCom value."""
        return {
            "job": self.job.to_dict(),
            "lithops_conn_id": self.lithops_conn_id,
            "runtime_memory": self.runtime_memory,
            "compute_backend": self.compute_backend,
        }

    @classmethod
    def from_dict(cls, data: Any) -> JobRecord:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on anything else."""
        if not isinstance(data, dict) or not isinstance(data.get("lithops_conn_id"), str):
            raise ValueError("not a job record")
        memory = data.get("runtime_memory")
        backend = data.get("compute_backend")
        try:
            job = JobRef.from_dict(data["job"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a job record: {err}") from None
        return cls(
            job=job,
            lithops_conn_id=data["lithops_conn_id"],
            runtime_memory=float(memory)
            if isinstance(memory, int | float) and not isinstance(memory, bool)
            else None,
            compute_backend=backend if isinstance(backend, str) else None,
        )
