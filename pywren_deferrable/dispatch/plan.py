"""The dispatch plan of one job: what the trigger needs to invoke the calls the worker left.

Pure data and pure functions (no I/O, no Lithops): the worker builds a plan
(:mod:`.capture`), stores it as JSON under the job's prefix (``job.dispatch_plan_key``),
and the trigger reads it back (:mod:`.dispatcher`).

A plan holds no credential. Lithops puts its whole config, storage and compute keys
included, in every invocation payload; the plan keeps that payload with each secret leaf
removed and remembers, for each one, where in the Connection's config it came from, so
that the triggerer can put it back from the Connection (``LithopsHook.aget_config``) at
dispatch time. Lithops' own caches of short-lived tokens (``token`` /
``token_expiry_time``) are dropped: the worker gets a new token if it needs one.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Container
from dataclasses import asdict, dataclass, field
from typing import Any

PLAN_VERSION = 1
# Config keys whose values are credentials (``api_key``, ``iam_api_key``,
# ``access_key_id``, ``secret_access_key``, ``session_token``, ``password``,
# ``amqp_url`` with its password, Azure connection strings...).
SECRET_KEY = re.compile(
    r"(key|secret|token|password|passwd|credential|connection_string|amqp_url|sas)", re.IGNORECASE
)
# What Lithops caches in the config it passes on (IAM bearer tokens and their expiry):
# secret or tied to one, derived rather than configured, so not restored but dropped.
CACHED_TOKEN_KEYS = frozenset({"token", "token_expiry_time"})

Path = tuple[str, ...]


class PlanError(ValueError):
    """A dispatch plan that cannot be used (malformed, or a secret the Connection lacks)."""


@dataclass(frozen=True)
class SecretRef:
    """One secret leaf removed from the payload's config.

    :param path: where it was in the payload's config.
    :param source: where its value is in the Connection's config, ``None`` when it is a
        token Lithops cached (dropped, not restored).
    """

    path: Path
    source: Path | None


def _leaves(tree: Any, prefix: Path = ()) -> list[tuple[Path, Any]]:
    if isinstance(tree, dict):
        found: list[tuple[Path, Any]] = []
        for key, value in tree.items():
            found.extend(_leaves(value, (*prefix, str(key))))
        return found
    return [(prefix, tree)]


def _is_secret_value(value: Any) -> bool:
    return isinstance(value, str) and len(value) >= 4


def find_secrets(config: dict[str, Any], connection_config: dict[str, Any]) -> list[SecretRef]:
    """The secret leaves of ``config`` (what Lithops sends), and where each came from.

    A leaf is secret when its key looks like a credential, or when its value is the
    value of such a leaf of the Connection's config (Lithops copies keys between sections:
    the ``ibm`` section's ``iam_api_key`` reaches ``ibm_cf`` and ``ibm_cos``).

    :raises PlanError: when a secret has no source in ``connection_config`` and is not a
        token Lithops caches: the trigger could not restore it.
    """
    connection_secrets: dict[str, Path] = {}
    for path, value in _leaves(connection_config):
        if path and SECRET_KEY.search(path[-1]) and _is_secret_value(value):
            connection_secrets.setdefault(value, path)
    refs: list[SecretRef] = []
    for path, value in _leaves(config):
        if not path:
            continue
        by_key = SECRET_KEY.search(path[-1]) is not None
        if not by_key and not (_is_secret_value(value) and value in connection_secrets):
            continue
        if value is None or value == "":
            continue  # an empty setting is no secret, and restoring it is pointless
        if path[-1] in CACHED_TOKEN_KEYS:
            refs.append(SecretRef(path, None))
            continue
        source = connection_secrets.get(value) if _is_secret_value(value) else None
        if source is None and _get(connection_config, path) == value:
            source = path
        if source is None:
            raise PlanError(
                f"config key {'.'.join(path)} looks like a credential but is not in the Connection's "
                "config: the trigger could not restore it. Put it in the Connection"
            )
        refs.append(SecretRef(path, source))
    return refs


def _get(tree: Any, path: Path) -> Any:
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _pop(tree: dict[str, Any], path: Path) -> None:
    for part in path[:-1]:
        tree = tree[part]
    tree.pop(path[-1], None)


def _set(tree: dict[str, Any], path: Path, value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def strip_secrets(config: dict[str, Any], refs: list[SecretRef]) -> dict[str, Any]:
    """A copy of ``config`` without the leaves ``refs`` name."""
    stripped = copy.deepcopy(config)
    for ref in refs:
        _pop(stripped, ref.path)
    return stripped


def restore_secrets(
    stripped: dict[str, Any], refs: list[SecretRef], connection_config: dict[str, Any]
) -> dict[str, Any]:
    """``stripped`` with its secrets put back from the Connection's config.

    :raises PlanError: a secret is no longer in the Connection (its value is never named).
    """
    config = copy.deepcopy(stripped)
    for ref in refs:
        if ref.source is None:
            continue
        value = _get(connection_config, ref.source)
        if value is None:
            raise PlanError(
                f"the Connection's config no longer has {'.'.join(ref.source)}, which the job's "
                f"calls need as {'.'.join(ref.path)}"
            )
        _set(config, ref.path, value)
    return config


@dataclass(frozen=True)
class Chunk:
    """One invocation's worth of calls: the call ids, and the payload fields that differ
    from the plan's template for this chunk (its ``data_byte_ranges``...)."""

    call_ids: tuple[str, ...]
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DispatchPlan:
    """What the trigger needs to invoke the chunks of one job that the worker did not.

    :param backend: the Lithops compute backend (``openwhisk``, ``ibm_cf``).
    :param target: where to invoke (endpoint, namespace, package, action...), no secret.
    :param max_workers: at most this many chunks (activations) running at once.
    :param chunksize: calls per chunk.
    :param direct: the call ids of the chunks the worker invoked (the first wave).
    :param pending: the chunks left to the trigger, in dispatch order.
    :param payload: Lithops' invocation payload for the job, without the per-chunk fields
        and with the secrets of ``payload["config"]`` removed.
    :param drop: payload keys Lithops removes for every chunk (``data_byte_ranges`` when
        the data travels inline).
    :param secrets: the removed secrets (see :class:`SecretRef`).
    """

    backend: str
    target: dict[str, Any]
    max_workers: int
    chunksize: int
    direct: tuple[tuple[str, ...], ...]
    pending: tuple[Chunk, ...]
    payload: dict[str, Any]
    drop: tuple[str, ...] = ()
    secrets: tuple[SecretRef, ...] = ()
    version: int = PLAN_VERSION

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_workers, bool)
            or not isinstance(self.max_workers, int)
            or self.max_workers < 1
        ):
            raise PlanError(f"max_workers must be a positive int, got {self.max_workers!r}")
        if not self.pending:
            raise PlanError("a dispatch plan needs pending chunks")

    def to_json(self) -> bytes:
        """The stored form (``default=str`` as Lithops' clients serialize payloads)."""
        return json.dumps(asdict(self), default=str, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> DispatchPlan:
        """Inverse of :meth:`to_json`; a plan it cannot read is a :class:`PlanError`."""
        try:
            data = json.loads(raw)
            if data.get("version") != PLAN_VERSION:
                raise PlanError(f"dispatch plan version {data.get('version')!r}, expected {PLAN_VERSION}")
            return cls(
                backend=str(data["backend"]),
                target=dict(data["target"]),
                max_workers=data["max_workers"],
                chunksize=int(data["chunksize"]),
                direct=tuple(tuple(c) for c in data["direct"]),
                pending=tuple(Chunk(tuple(c["call_ids"]), dict(c["fields"])) for c in data["pending"]),
                payload=dict(data["payload"]),
                drop=tuple(data.get("drop") or ()),
                secrets=tuple(
                    SecretRef(tuple(s["path"]), tuple(s["source"]) if s["source"] else None)
                    for s in data.get("secrets") or ()
                ),
            )
        except PlanError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise PlanError(f"unreadable dispatch plan: {type(err).__name__}: {err}") from None

    def chunk_payload(self, index: int, connection_config: dict[str, Any], now: float) -> dict[str, Any]:
        """The payload of pending chunk ``index``, as Lithops' ``_invoke_task`` would send it,
        with the secrets from ``connection_config``."""
        chunk = self.pending[index]
        payload = {k: v for k, v in self.payload.items() if k not in self.drop}
        payload["config"] = restore_secrets(self.payload["config"], list(self.secrets), connection_config)
        payload.update(chunk.fields)
        payload["call_ids"] = list(chunk.call_ids)
        payload["host_submit_tstamp"] = now
        return payload


@dataclass
class Cursor:
    """How many pending chunks of a plan the backend has accepted (stored with the job)."""

    dispatched: int = 0

    def to_json(self) -> bytes:
        return json.dumps({"dispatched": self.dispatched}).encode()

    @classmethod
    def from_json(cls, raw: bytes | None) -> Cursor:
        if raw is None:
            return cls()
        try:
            value = json.loads(raw)["dispatched"]
        except (ValueError, KeyError, TypeError) as err:
            raise PlanError(f"unreadable dispatch cursor: {err}") from None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PlanError(f"dispatch cursor must be a non-negative int, got {value!r}")
        return cls(value)


def dispatched_through(plan: DispatchPlan, cursor: int, seen: Container[str]) -> int:
    """The cursor, moved past every pending chunk a call of which has started or ended.

    Chunks are dispatched in order, so a chunk that shows a call implies that it and
    every chunk before it were accepted, even when the trigger that dispatched them died
    before writing the cursor: a new trigger then re-dispatches only chunks not yet seen.
    """
    for index in range(len(plan.pending) - 1, cursor - 1, -1):
        if any(c in seen for c in plan.pending[index].call_ids):
            return index + 1
    return cursor


def running_chunks(plan: DispatchPlan, dispatched: int, done: Container[str]) -> int:
    """Chunks invoked (first wave and dispatched ones) that have not ended: a chunk's
    activation runs until its last call ends."""
    invoked = list(plan.direct) + [c.call_ids for c in plan.pending[:dispatched]]
    return sum(1 for calls in invoked if not all(c in done for c in calls))
