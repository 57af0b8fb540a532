"""The job reference and the engines' storage key layouts, as small pure functions.

Nothing else in the project builds a storage key by hand: the trigger, the result
fetcher and the cleaner all go through these functions, so that the layout each engine
writes lives in one place and cleanup can be proven never to leave a job's own prefixes.

Two engines write status objects the trigger can poll. Their layouts differ only in
the jobs prefix, in how the job key joins executor and job ids, and in whether the
executor has objects of its own; a :class:`KeyLayout` holds exactly those differences.

Lithops (measured on 3.8, ``lithops/storage/utils.py``)::

    lithops.jobs/<executor_id>/<hash>.func.pickle           the pickled function
    lithops.jobs/<executor_id>-<job_id>/aggdata.pickle       the pickled iterdata
    lithops.jobs/<executor_id>-<job_id>/<call_id>/<act>.init a call has started
    lithops.jobs/<executor_id>-<job_id>/<call_id>/status.json  a call has ended
    lithops.jobs/<executor_id>-<job_id>/<call_id>/output.pickle  its result, when >= 8 KiB

An executor that a payload function creates inside a call (to return its futures) is
named after that call's session: ``<executor_id>-<job_id>-<call_id>-<n>``, at any depth.
Its objects follow the same layout, so every job a job's calls created lies under
``lithops.jobs/<executor_id>-<job_id>-`` (:func:`descendant_prefix`).

pywren-ibm-cloud 1.7.3 (``pywren_ibm_cloud/storage/utils.py``; executor ids are
``<session>/<n>``)::

    pywren.jobs/<executor_id>/<job_id>/func.pickle           the pickled function
    pywren.jobs/<executor_id>/<job_id>/aggdata.pickle        the pickled iterdata
    pywren.jobs/<executor_id>/<job_id>/<call_id>/<act>.init  a call has started
    pywren.jobs/<executor_id>/<job_id>/<call_id>/status.json a call has ended
    pywren.jobs/<executor_id>/<job_id>/<call_id>/output.pickle its result, if not None
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

STATUS_SUFFIX = "status.json"
OUTPUT_SUFFIX = "output.pickle"
INIT_SUFFIX = ".init"

ENGINE_LITHOPS = "lithops"
ENGINE_PYWREN = "pywren"
ENGINES = (ENGINE_LITHOPS, ENGINE_PYWREN)
# How logs and errors name each engine.
ENGINE_NAMES = {ENGINE_LITHOPS: "Lithops", ENGINE_PYWREN: "pywren-ibm-cloud"}


@dataclass(frozen=True)
class KeyLayout:
    """How one engine names a job's objects.

    :param jobs_prefix: the top-level prefix of every job object.
    :param job_separator: what joins executor id and job id into the job key.
    :param executor_id: the shape of the engine's executor ids. Anything else in a
        JobRef did not come from the engine: refusing it keeps a crafted id from widening
        a prefix (``"x/../"``, ``""``) and so keeps cleanup inside the job.
    :param executor_example: an executor id of that shape, for error messages.
    :param executor_objects: the executor has a prefix of its own (Lithops keeps the
        pickled functions there), which the job's cleanup includes.
    """

    jobs_prefix: str
    job_separator: str
    executor_id: re.Pattern[str]
    executor_example: str
    executor_objects: bool


LAYOUTS = {
    # Lithops executor ids are "<6 hex>-<counter>", or, for an executor that a payload
    # function created inside a call (and whose futures it returned), the session of that
    # call "<job key>-<call id>" and a counter: "a1b2c3-0-M000-00003-1", at any depth.
    ENGINE_LITHOPS: KeyLayout(
        "lithops.jobs",
        "-",
        re.compile(r"^[0-9a-f]{6}-[0-9]{1,6}(?:-[AMR][0-9]{3,6}-[0-9]{5,}-[0-9]{1,6})*$"),
        "a1b2c3-0",
        True,
    ),
    # pywren's are "<first 6 chars of a uuid4>/<counter>".
    ENGINE_PYWREN: KeyLayout("pywren.jobs", "/", re.compile(r"^[0-9a-f]{6}/[0-9]{1,6}$"), "a1b2c3/0", False),
}
JOBS_PREFIX = LAYOUTS[ENGINE_LITHOPS].jobs_prefix

# Patterns are used with fullmatch: "$" alone would accept a trailing newline.
# Job ids are a letter and three digits in both engines (A000 call_async, M000 map,
# R000 reduce).
_JOB_ID = re.compile(r"^[AMR][0-9]{3,6}$")
_CALL_ID = re.compile(r"^[0-9]{5,}$")
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")

STORAGE_S3 = "s3"
STORAGE_LOCALHOST = "localhost"
# One per module of pywren_deferrable/storages/ (Google Cloud Storage, Azure Blob, Redis).
STORAGE_KINDS = (STORAGE_S3, STORAGE_LOCALHOST, "gcs", "azure", "redis")


def key_layout(engine: str) -> KeyLayout:
    """The key layout of ``engine`` (``lithops`` or ``pywren``)."""
    try:
        return LAYOUTS[engine]
    except (KeyError, TypeError):
        raise ValueError(f"engine {engine!r} is not one of {ENGINES}") from None


def validate_executor_id(executor_id: str, engine: str = ENGINE_LITHOPS) -> str:
    """Return ``executor_id`` if it has ``engine``'s shape, else raise ``ValueError``."""
    layout = key_layout(engine)
    if not isinstance(executor_id, str) or not layout.executor_id.fullmatch(executor_id):
        raise ValueError(
            f"executor_id {executor_id!r} is not a {engine} executor id (like {layout.executor_example!r})"
        )
    return executor_id


def validate_job_id(job_id: str) -> str:
    """Return ``job_id`` if it has Lithops' shape (``M000``), else raise ``ValueError``."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"job_id {job_id!r} is not a Lithops job id (like 'M000')")
    return job_id


def call_id(index: int) -> str:
    """The fixed-width call id Lithops gives the ``index``-th call of a job."""
    return f"{index:05d}"


def job_key(executor_id: str, job_id: str, engine: str = ENGINE_LITHOPS) -> str:
    """The id shared by every call of a job (``<executor_id>-<job_id>`` in Lithops,
    ``<executor_id>/<job_id>`` in pywren)."""
    separator = key_layout(engine).job_separator
    return f"{validate_executor_id(executor_id, engine)}{separator}{validate_job_id(job_id)}"


def job_prefix(executor_id: str, job_id: str, engine: str = ENGINE_LITHOPS) -> str:
    """The prefix under which every object of one job lives; ends with ``/`` so it
    never matches a sibling job whose key merely starts the same way."""
    return f"{key_layout(engine).jobs_prefix}/{job_key(executor_id, job_id, engine)}/"


def executor_prefix(executor_id: str, engine: str = ENGINE_LITHOPS) -> str | None:
    """The prefix of the executor's own objects (Lithops' pickled functions), or
    ``None`` when the engine keeps everything under the job prefixes (pywren)."""
    layout = key_layout(engine)
    if not layout.executor_objects:
        return None
    return f"{layout.jobs_prefix}/{validate_executor_id(executor_id, engine)}/"


def call_prefix(executor_id: str, job_id: str, call: str, engine: str = ENGINE_LITHOPS) -> str:
    """The prefix of one call's objects."""
    return f"{job_prefix(executor_id, job_id, engine)}{call}/"


def status_key(executor_id: str, job_id: str, call: str, engine: str = ENGINE_LITHOPS) -> str:
    """Where a call writes its final status (success or exception)."""
    return f"{call_prefix(executor_id, job_id, call, engine)}{STATUS_SUFFIX}"


def output_key(executor_id: str, job_id: str, call: str, engine: str = ENGINE_LITHOPS) -> str:
    """Where a call writes its pickled result (Lithops: when it is too large to go inline)."""
    return f"{call_prefix(executor_id, job_id, call, engine)}{OUTPUT_SUFFIX}"


def list_start_after(
    executor_id: str, job_id: str, last_done_call: str | None, engine: str = ENGINE_LITHOPS
) -> str:
    """The ``StartAfter`` key that skips ``last_done_call`` and every call listed before it.

    ``<prefix><call_id>/~`` sorts after every object of that call (``~`` sorts after
    the hex digits, digits, dots and lowercase letters both engines use in object names)
    and before every object of the call listed next (see :func:`calls_in_listing_order`).
    """
    if last_done_call is None:
        return ""
    return f"{call_prefix(executor_id, job_id, last_done_call, engine)}~"


def calls_in_listing_order(total: int) -> list[str]:
    """The call ids of a job of ``total`` calls, in the order S3 lists their keys.

    That is numeric order up to 100,000 calls. Beyond, Lithops' ids grow to six digits
    and sort among the five-digit ones (``"100000"`` between ``"10000"`` and ``"10001"``),
    since ``/`` sorts before every digit; a watermark in numeric order would then skip them.
    """
    ids = [call_id(i) for i in range(total)]
    return ids if total <= 100_000 else sorted(ids)


def _is_call_id(text: str, total: int) -> bool:
    """Whether ``text`` is the id of one of a job's ``total`` calls (see :func:`call_id`)."""
    if len(text) < 5 or (len(text) > 5 and text[0] == "0"):
        return False
    return int(text) < total


def next_call_in_listing_order(call: str | None, total: int) -> str | None:
    """The call listed right after ``call`` in a job of ``total`` calls (``None``: the
    first call), or ``None`` after the last one.

    The same order as :func:`calls_in_listing_order`, without building the list: a poller
    walks its watermark with it, so that its memory does not grow with the job. Call ids
    in listing order are a preorder walk of their digit trie: descend to ``call + "0"``
    when that is a call id (ids beyond 99,999 have six digits or more), else move to the
    next sibling of ``call`` or of its nearest ancestor that has one.
    """
    if total <= 0:
        return None
    if call is None:
        return call_id(0)
    if len(call) >= 5 and call[0] != "0" and _is_call_id(call + "0", total):
        return call + "0"
    node = call
    while node:
        last = node[-1]
        if last != "9":
            sibling = node[:-1] + chr(ord(last) + 1)
            # A prefix shorter than an id stands for its smallest id (zero-padded).
            candidate = sibling.ljust(5, "0")
            if _is_call_id(candidate, total):
                return candidate
        node = node[:-1]
    return None


@dataclass(frozen=True)
class ParsedKey:
    """What a key under a job prefix says about a call."""

    call: str
    kind: str  # "init", "status", "output" or "other"


def parse_job_object_key(prefix: str, key: str) -> ParsedKey | None:
    """Classify ``key`` (which must start with ``prefix``) as a call's init/status/output.

    Returns ``None`` for job-level objects such as ``aggdata.pickle``.
    """
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix) :]
    call, sep, name = rest.partition("/")
    if not sep or not _CALL_ID.fullmatch(call) or "/" in name:
        return None
    if name == STATUS_SUFFIX:
        return ParsedKey(call, "status")
    if name == OUTPUT_SUFFIX:
        return ParsedKey(call, "output")
    if name.endswith(INIT_SUFFIX):
        return ParsedKey(call, "init")
    return ParsedKey(call, "other")


# What follows a descendant prefix (see :func:`descendant_prefix`) in a key of a job that
# a call of the job created: "<call>-<counter>", then any "-<job>-<call>-<counter>" of
# deeper levels, then the executor's own "/" or a job's "-<job>/".
_DESCENDANT_TAIL = re.compile(
    r"^[0-9]{5,}-[0-9]{1,6}(?:-[AMR][0-9]{3,6}-[0-9]{5,}-[0-9]{1,6})*(?:-[AMR][0-9]{3,6})?/."
)


def child_executor_prefix(executor_id: str, job_id: str, call: str) -> str:
    """How the ids of executors created inside ``call`` of a Lithops job begin.

    Lithops' worker names the session of a call ``<job key>-<call id>``
    (``lithops/worker/handler.py``), and an executor created in it gets
    ``<session>-<counter>`` (``lithops/utils.py``, ``create_executor_id``): an id that
    starts this way can only belong to an executor of that call.
    """
    if not _CALL_ID.fullmatch(call):
        raise ValueError(f"call id {call!r} is not a Lithops call id (like '00000')")
    return f"{job_key(executor_id, job_id)}-{call}-"


def is_child_executor(child: str, executor_id: str, job_id: str, call: str) -> bool:
    """True when ``child`` is the id of an executor created inside ``call`` of the job."""
    prefix = child_executor_prefix(executor_id, job_id, call)
    return child.startswith(prefix) and child[len(prefix) :].isdigit() and child.isascii()


def descendant_prefix(executor_id: str, job_id: str, engine: str = ENGINE_LITHOPS) -> str | None:
    """The prefix under which lie the objects of every job that the job's calls created
    (futures returned by payload functions, at any depth): ``lithops.jobs/<job key>-``.

    ``None`` for pywren-ibm-cloud, whose jobs keep nothing outside their own prefix.
    The prefix alone also matches look-alikes (``<job key>-x/``): keys under it are
    owned only when they have a descendant's shape (:func:`is_key_owned_by_descendant`).
    """
    if engine != ENGINE_LITHOPS:
        return None
    return f"{key_layout(engine).jobs_prefix}/{job_key(executor_id, job_id, engine)}-"


def is_key_owned_by_descendant(
    key: str, executor_id: str, job_ids: list[str], engine: str = ENGINE_LITHOPS
) -> bool:
    """True when ``key`` is an object of a job created by one of the job's calls (its
    executor's own objects, or a job's), at any depth."""
    for job_id in job_ids:
        prefix = descendant_prefix(executor_id, job_id, engine)
        if prefix and key.startswith(prefix) and _DESCENDANT_TAIL.match(key[len(prefix) :]):
            return True
    return False


def split_job_key(key: str, engine: str = ENGINE_LITHOPS) -> tuple[str, str]:
    """``(executor_id, job_id)`` of a job key (``a1b2c3-0-M000-00001-1-M000``); raises
    ``ValueError`` when it is not one."""
    separator = key_layout(engine).job_separator
    executor_id, sep, job_id = key.rpartition(separator) if isinstance(key, str) else ("", "", "")
    if not sep:
        raise ValueError(f"{key!r} is not a job key")
    return validate_executor_id(executor_id, engine), validate_job_id(job_id)


# A job's own objects that are ours, not the engine's: under the job prefix (so the
# cleanup of the job covers them), in a folder no call id can be.
DISPATCH_FOLDER = "pywren-deferrable.dispatch"


def dispatch_plan_key(executor_id: str, job_id: str) -> str:
    """Where the worker leaves the calls it did not invoke, for the trigger to invoke them
    (see :mod:`pywren_deferrable.dispatch`). Under the job prefix: cleaned with the job."""
    return f"{job_prefix(executor_id, job_id)}{DISPATCH_FOLDER}/plan.json"


def dispatch_cursor_key(executor_id: str, job_id: str) -> str:
    """How far the trigger has dispatched a job's plan: written only after the backend
    accepted a batch, so that a new trigger resumes there (at-least-once)."""
    return f"{job_prefix(executor_id, job_id)}{DISPATCH_FOLDER}/cursor.json"


LINEAGE_PREFIX = "pywren-deferrable/lineage/"


def lineage_key(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """Where a task instance records the job it submitted, so that a retry of it can
    reattach instead of paying for the job twice. Hashed: run ids hold any character."""
    import hashlib

    identity = "\x1f".join((dag_id, run_id, task_id, str(map_index)))
    return f"{LINEAGE_PREFIX}{hashlib.sha256(identity.encode()).hexdigest()}.json"


def owned_prefixes(executor_id: str, job_ids: list[str], engine: str = ENGINE_LITHOPS) -> list[str]:
    """Every prefix a job owns: its jobs', and the executor's own (Lithops only)."""
    prefixes = [job_prefix(executor_id, j, engine) for j in job_ids]
    own = executor_prefix(executor_id, engine)
    return prefixes + ([own] if own else [])


def is_key_owned_by_job(key: str, executor_id: str, job_ids: list[str], engine: str = ENGINE_LITHOPS) -> bool:
    """True when ``key`` lies under one of the job's own prefixes (see :func:`owned_prefixes`).
    The cleaner deletes nothing for which this is False."""
    return any(key.startswith(p) and len(key) > len(p) for p in owned_prefixes(executor_id, job_ids, engine))


@dataclass(frozen=True)
class StorageLocation:
    """Where a job's objects live. Never holds a credential: credentials come from the
    Airflow Connection each time they are needed, so this can travel in trigger
    kwargs and XCom.

    :param kind: ``"s3"`` (IBM COS, MinIO, Ceph, AWS S3...), ``"localhost"``, ``"gcs"``,
        ``"azure"`` or ``"redis"`` (see :mod:`pywren_deferrable.storages`).
    :param bucket: the Lithops ``storage_bucket``.
    :param backend: the Lithops storage backend name (``ibm_cos``, ``minio``...).
    :param endpoint: the endpoint URL, when not the backend's default (S3, GCS), the
        account URL (Azure), ``redis[s]://host:port/db`` (Redis).
    :param region: the S3 region, if any.
    :param root: for ``localhost`` storage, the directory that holds the buckets.
    """

    kind: str
    bucket: str
    backend: str
    endpoint: str | None = None
    region: str | None = None
    root: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in STORAGE_KINDS:
            raise ValueError(f"storage kind {self.kind!r} is not one of {STORAGE_KINDS}")
        if not isinstance(self.bucket, str) or not _BUCKET.fullmatch(self.bucket):
            raise ValueError(f"storage bucket {self.bucket!r} is not a valid bucket name")
        if self.kind == STORAGE_LOCALHOST and not self.root:
            raise ValueError("localhost storage needs the root directory of its buckets")


@dataclass(frozen=True)
class JobRef:
    """A small, secret-free reference to a submitted job: enough for the trigger to
    poll it and for the worker to fetch its results.

    :param executor_id: the engine's executor id.
    :param job_ids: the job ids in the order they must finish (``["M000", "R000"]``
        for a map-reduce).
    :param total_calls: number of calls of each job, keyed by job id.
    :param storage: where the objects live.
    :param call_type: ``call_async``, ``map`` or ``map_reduce``.
    :param engine_version: the version of the engine that submitted the job.
    :param runner_pid: the pid of the detached runner hosting the job, if any.
    :param runner_log: the runner's log file, if any.
    :param submitted_at: when the job was submitted (epoch seconds).
    :param call_timeout: how long one call may run (the engine's execution timeout), seconds.
    :param engine: ``lithops`` or ``pywren`` (pywren-ibm-cloud 1.7.3): which key layout
        and status format the job's objects have.
    :param dispatch: the job ids whose calls beyond ``max_workers`` were left to the
        trigger, in a dispatch plan stored with the job (see :mod:`pywren_deferrable.dispatch`).
        A flag, not the plan: the plan is in storage, its secrets in the Connection.
    """

    executor_id: str
    job_ids: tuple[str, ...]
    total_calls: dict[str, int]
    storage: StorageLocation
    call_type: str
    engine_version: str
    runner_pid: int | None = None
    runner_log: str | None = None
    submitted_at: float | None = None
    call_timeout: float | None = None
    engine: str = ENGINE_LITHOPS
    dispatch: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_executor_id(self.executor_id, self.engine)
        if not self.job_ids:
            raise ValueError("a JobRef needs at least one job id")
        for job_id in self.dispatch:
            if job_id not in self.job_ids:
                raise ValueError(f"dispatch names job {job_id!r}, which is not one of {self.job_ids}")
            if self.engine != ENGINE_LITHOPS:
                raise ValueError("only Lithops jobs have dispatch plans")
        for job_id in self.job_ids:
            validate_job_id(job_id)
            count = self.total_calls.get(job_id)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"total_calls[{job_id!r}] must be a positive int, got {count!r}")

    @property
    def calls(self) -> int:
        """Total number of calls over all jobs."""
        return sum(self.total_calls[j] for j in self.job_ids)

    @property
    def result_job_id(self) -> str:
        """The job whose calls produce the task's results (the last one)."""
        return self.job_ids[-1]

    def job_prefix(self, job_id: str) -> str:
        """The prefix of one of this JobRef's jobs (see :func:`job_prefix`)."""
        return job_prefix(self.executor_id, job_id, self.engine)

    def status_key(self, job_id: str, call: str) -> str:
        """Where ``call`` of ``job_id`` writes its status (see :func:`status_key`)."""
        return status_key(self.executor_id, job_id, call, self.engine)

    def output_key(self, job_id: str, call: str) -> str:
        """Where ``call`` of ``job_id`` writes its result (see :func:`output_key`)."""
        return output_key(self.executor_id, job_id, call, self.engine)

    def list_start_after(self, job_id: str, last_done_call: str | None) -> str:
        """See :func:`list_start_after`."""
        return list_start_after(self.executor_id, job_id, last_done_call, self.engine)

    def dispatch_plan_key(self, job_id: str) -> str:
        """See :func:`dispatch_plan_key`."""
        return dispatch_plan_key(self.executor_id, job_id)

    def dispatch_cursor_key(self, job_id: str) -> str:
        """See :func:`dispatch_cursor_key`."""
        return dispatch_cursor_key(self.executor_id, job_id)

    def owns(self, key: str) -> bool:
        """True when ``key`` lies under one of this job's own prefixes."""
        return is_key_owned_by_job(key, self.executor_id, list(self.job_ids), self.engine)

    def prefixes(self) -> list[str]:
        """Every prefix this job owns, for cleanup."""
        return owned_prefixes(self.executor_id, list(self.job_ids), self.engine)

    def descendant_prefixes(self) -> list[str]:
        """The prefixes of the jobs this job's calls created (see :func:`descendant_prefix`),
        for cleanup; only keys :meth:`owns_descendant` accepts are this job's."""
        found = (descendant_prefix(self.executor_id, j, self.engine) for j in self.job_ids)
        return [p for p in found if p]

    def owns_descendant(self, key: str) -> bool:
        """True when ``key`` belongs to a job that one of this job's calls created."""
        return is_key_owned_by_descendant(key, self.executor_id, list(self.job_ids), self.engine)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for trigger kwargs and XCom)."""
        data = asdict(self)
        data["job_ids"] = list(self.job_ids)
        data["dispatch"] = list(self.dispatch)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRef:
        """Inverse of :meth:`to_dict`; validates every field.

        Keys this version does not know are ignored: a JobRef serialized by another
        version of the provider (a task deferred across an upgrade) must still load.
        For the same reason the ``lithops_version`` of JobRefs from before the pywren
        engine existed is read as ``engine_version``.
        """
        if not isinstance(data, dict):
            raise TypeError(f"a JobRef must be a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "engine_version" not in values and "lithops_version" in data:
            values["engine_version"] = data["lithops_version"]
        storage = data.get("storage")
        if not isinstance(storage, dict):
            raise TypeError("a JobRef needs its storage location (a dict)")
        storage_known = {f.name for f in fields(StorageLocation)}
        values["storage"] = StorageLocation(**{k: v for k, v in storage.items() if k in storage_known})
        values["job_ids"] = tuple(values.get("job_ids") or ())
        values["dispatch"] = tuple(values.get("dispatch") or ())
        values["total_calls"] = {str(k): v for k, v in (values.get("total_calls") or {}).items()}
        return cls(**values)
