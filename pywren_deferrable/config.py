"""Airflow Connection -> Lithops config, as pure functions (no I/O, no Lithops import).

The Connection's extra *is* a Lithops config (the sections a Lithops user already has
in ``~/.lithops/config``); login/password may carry the storage HMAC keys so that they
live in the Connection's secret fields. The operator's ``pywren_executor_config`` is
merged on top, either as config sections or, like the seed plugin and Lithops'
``FunctionExecutor(**kwargs)``, as flat keys (``runtime``, ``runtime_memory``...).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import Any

from pywren_deferrable.config_pywren import (
    PYWREN_SECTIONS,
    build_pywren_config,
    pywren_s3_keys,
    pywren_storage_location,
)
from pywren_deferrable.config_sections import deep_merge, fill_connection_keys
from pywren_deferrable.job import (
    ENGINE_LITHOPS,
    ENGINE_PYWREN,
    ENGINES,
    STORAGE_LOCALHOST,
    STORAGE_S3,
    StorageLocation,
)

# Lithops' compute backends (3.8) by config section name.
COMPUTE_BACKENDS = frozenset(
    {
        "localhost",
        "ibm_cf",
        "code_engine",
        "aws_lambda",
        "aws_batch",
        "gcp_functions",
        "gcp_cloudrun",
        "azure_functions",
        "azure_containers",
        "aliyun_fc",
        "oracle_f",
        "k8s",
        "knative",
        "openwhisk",
        "singularity",
        "ibm_vpc",
        "aws_ec2",
        "azure_vms",
        "vm",
    }
)
# Storage backends reachable over the S3 protocol, which is what the trigger speaks.
S3_STORAGE_BACKENDS = frozenset({"ibm_cos", "minio", "ceph", "aws_s3"})
STORAGE_BACKENDS = S3_STORAGE_BACKENDS | {
    "localhost",
    "redis",
    "swift",
    "gcp_storage",
    "azure_storage",
    "aliyun_oss",
    "oracle_oss",
    "infinispan",
}
# Sections that are not backends but may appear in a Lithops config.
OTHER_SECTIONS = frozenset(
    {"lithops", "aws", "ibm", "gcp", "azure", "aliyun", "oracle", "standalone", "rabbitmq"}
)
# pywren-ibm-cloud's sections count too: pywren_executor_config serves both engines.
CONFIG_SECTIONS = COMPUTE_BACKENDS | STORAGE_BACKENDS | OTHER_SECTIONS | PYWREN_SECTIONS
# Flat override keys that belong in the ``lithops`` section, as FunctionExecutor's
# ``mode``/``backend``/``storage``/``monitoring`` arguments do.
LITHOPS_SECTION_KEYS = frozenset(
    {"mode", "backend", "storage", "monitoring", "log_level", "execution_timeout", "chunksize"}
)

IBM_COS_PUBLIC_ENDPOINT = "https://s3.{}.cloud-object-storage.appdomain.cloud"
AWS_S3_ENDPOINT = "https://s3.{}.amazonaws.com"
DEFAULT_LOCALHOST_VERSION = 1  # measured ~10x faster than v2 against an S3 endpoint


def normalize_overrides(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Turn an operator's ``pywren_executor_config`` into config sections.

    Dict values under a known section name are sections; flat keys go where
    ``FunctionExecutor(**kwargs)`` would put them: ``backend``/``storage``/... into
    ``lithops``, everything else (``runtime``, ``runtime_memory``...) into the compute
    backend's section (resolved later, once the backend is known).
    """
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise TypeError(f"pywren_executor_config must be a dict, got {type(overrides).__name__}")
    sections: dict[str, Any] = {}
    flat_backend: dict[str, Any] = {}
    for key, value in overrides.items():
        if not isinstance(key, str):
            raise TypeError(f"pywren_executor_config keys must be strings, got {key!r}")
        if key in CONFIG_SECTIONS:
            if not isinstance(value, dict):
                raise TypeError(
                    f"pywren_executor_config[{key!r}] is a Lithops config section and must be a dict, "
                    f"got {type(value).__name__}"
                )
            sections = deep_merge(sections, {key: value})
        elif key in LITHOPS_SECTION_KEYS:
            sections = deep_merge(sections, {"lithops": {key: value}})
        else:
            flat_backend[key] = value
    if flat_backend:
        sections["__backend__"] = flat_backend
    return sections


def validate_backend_names(config: dict[str, Any]) -> None:
    """Raise ``ValueError`` when ``lithops.backend``/``lithops.storage`` name no Lithops backend."""
    lithops_section = config.get("lithops", {})
    backend = lithops_section.get("backend")
    if backend is not None and backend not in COMPUTE_BACKENDS:
        raise ValueError(
            f"unknown Lithops compute backend {backend!r}; expected one of {sorted(COMPUTE_BACKENDS)}"
        )
    storage = lithops_section.get("storage")
    if storage is not None and storage not in STORAGE_BACKENDS:
        raise ValueError(
            f"unknown Lithops storage backend {storage!r}; expected one of {sorted(STORAGE_BACKENDS)}"
        )


def connection_engine(extra: dict[str, Any] | None) -> str:
    """The engine a Connection's extra asks for (``engine``: ``lithops``, the default, or ``pywren``)."""
    engine = (extra or {}).get("engine") or ENGINE_LITHOPS
    if engine not in ENGINES:
        raise ValueError(f"the Connection's engine {engine!r} is not one of {ENGINES}")
    return str(engine)


def engine_of(config: dict[str, Any]) -> str:
    """The engine a built config is for: a pywren config has a ``pywren`` section and no
    ``lithops`` one (:func:`build_config` makes sure of it)."""
    return ENGINE_PYWREN if "pywren" in config and "lithops" not in config else ENGINE_LITHOPS


def build_config(
    extra: dict[str, Any] | None,
    *,
    login: str | None = None,
    password: str | None = None,
    host: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config of one job for the engine the Connection names: Lithops'
    (:func:`build_lithops_config`) or pywren-ibm-cloud's
    (:func:`~pywren_deferrable.config_pywren.build_pywren_config`)."""
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"the Connection extra must be a JSON object, got {type(extra).__name__}")
    engine = connection_engine(extra)
    extra = {k: v for k, v in (extra or {}).items() if k != "engine"}
    if engine == ENGINE_PYWREN:
        return build_pywren_config(
            extra, normalize_overrides(overrides), login=login, password=password, host=host
        )
    return build_lithops_config(extra, login=login, password=password, host=host, overrides=overrides)


def storage_backend_name(config: dict[str, Any]) -> str:
    """The storage backend of a built config, whatever its engine."""
    if engine_of(config) == ENGINE_PYWREN:
        return str(config["pywren"]["storage_backend"])
    return str(config["lithops"]["storage"])


def compute_backend_name(config: dict[str, Any]) -> str:
    """The compute backend of a built config, whatever its engine."""
    if engine_of(config) == ENGINE_PYWREN:
        return str(config["pywren"]["compute_backend"])
    return str(config["lithops"]["backend"])


def build_lithops_config(
    extra: dict[str, Any] | None,
    *,
    login: str | None = None,
    password: str | None = None,
    host: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the Lithops config for one job.

    :param extra: the Connection's extra (Lithops config sections).
    :param login: storage access key id (HMAC), if set on the Connection.
    :param password: storage secret access key (HMAC), if set on the Connection.
    :param host: storage endpoint, used when the storage section has none.
    :param overrides: the operator's ``pywren_executor_config``.
    """
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"the Connection extra must be a JSON object, got {type(extra).__name__}")
    base = copy.deepcopy(extra or {})
    normalized = normalize_overrides(overrides)
    flat_backend = normalized.pop("__backend__", {})
    config = deep_merge(base, normalized)
    lithops_section = config.setdefault("lithops", {})
    if not isinstance(lithops_section, dict):
        raise TypeError("the 'lithops' section of the config must be a dict")

    validate_backend_names(config)
    backend = lithops_section.setdefault("backend", "localhost")
    if backend == "localhost":
        lithops_section.setdefault("mode", "localhost")
        lithops_section.setdefault("storage", "localhost")
    storage = lithops_section.get("storage")
    if storage is None:
        raise ValueError("the Lithops config names no storage backend: set extra['lithops']['storage']")

    if flat_backend:
        config[backend] = deep_merge(config.get(backend) or {}, flat_backend)

    # Cleaning is ours: after the results are fetched, and only the job's own prefixes.
    lithops_section["data_cleaner"] = False

    if backend == "localhost":
        localhost = config.setdefault("localhost", {})
        # An interpreter *name* would be looked up on PATH by the runner; the task's own
        # interpreter is the one that has the user's packages.
        localhost.setdefault("runtime", sys.executable)
        localhost.setdefault("version", DEFAULT_LOCALHOST_VERSION)

    if storage in S3_STORAGE_BACKENDS:
        fill_connection_keys(
            config.setdefault(storage, {}),
            ("access_key_id", "secret_access_key"),
            login=login,
            password=password,
            host=None if storage == "aws_s3" else host,
        )
    return config


@dataclass(frozen=True)
class S3Credentials:
    """What the async S3 client needs. Never serialized, never logged."""

    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None = None
    # IBM COS with an IAM API key instead of HMAC keys: requests carry IAM bearer tokens.
    iam_api_key: str | None = None
    iam_endpoint: str | None = None  # None: https://iam.cloud.ibm.com/identity/token
    service_instance_id: str | None = None  # sent only where COS needs it (ListBuckets)

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        text = f"S3Credentials(access_key_id={'***' if self.access_key_id else None}"
        if self.iam_api_key:
            text += ", iam_api_key=***"
        return text + ")"


def storage_location(config: dict[str, Any]) -> StorageLocation:
    """Where a job submitted with ``config`` keeps its objects (no secrets)."""
    if engine_of(config) == ENGINE_PYWREN:
        return pywren_storage_location(config)
    storage = config["lithops"]["storage"]
    section = config.get(storage) or {}
    if storage == "localhost":
        # Called on the worker at submit time, where Lithops is loaded anyway.
        from lithops.constants import LITHOPS_TEMP_DIR

        return StorageLocation(
            kind=STORAGE_LOCALHOST,
            bucket=section.get("storage_bucket", "storage"),
            backend="localhost",
            root=LITHOPS_TEMP_DIR,
        )
    if storage not in S3_STORAGE_BACKENDS:
        from pywren_deferrable.storages import KINDS, kind_for_backend  # each storage's own module

        kind = kind_for_backend(storage)
        if kind is None:
            polled = sorted(b for k in KINDS.values() for b in k.lithops_backends)
            raise ValueError(
                f"storage backend {storage!r} cannot be polled by the trigger; use one of {polled}"
            )
        return kind.location(config)
    bucket = section.get("storage_bucket")
    if not bucket:
        raise ValueError(f"the {storage!r} storage section needs a 'storage_bucket'")
    region = section.get("region") or section.get("region_name")
    endpoint = section.get("endpoint")
    if storage == "ibm_cos" and not endpoint:
        if not region:
            raise ValueError("the 'ibm_cos' storage section needs an 'endpoint' or a 'region'")
        endpoint = IBM_COS_PUBLIC_ENDPOINT.format(region)
    if storage == "aws_s3":
        region = region or (config.get("aws") or {}).get("region")
        if not region:
            raise ValueError("the 'aws_s3' storage section needs a 'region'")
    if storage in ("minio", "ceph") and not endpoint:
        raise ValueError(f"the {storage!r} storage section needs an 'endpoint'")
    return StorageLocation(kind=STORAGE_S3, bucket=bucket, backend=storage, endpoint=endpoint, region=region)


def s3_credentials(config: dict[str, Any]) -> S3Credentials:
    """The credentials for the S3 storage named in ``config``: HMAC keys, or for IBM COS
    without both HMAC keys, its IAM API key (as Lithops' ibm_cos backend chooses)."""
    if engine_of(config) == ENGINE_PYWREN:
        return S3Credentials(**{"access_key_id": None, "secret_access_key": None, **pywren_s3_keys(config)})
    storage = config["lithops"]["storage"]
    section = dict(config.get(storage) or {})
    if storage == "aws_s3":
        section = {**(config.get("aws") or {}), **section}
    if storage == "ibm_cos":
        # Lithops fills ibm_cos from the ``ibm`` section (ibm_cos keys win), prefers HMAC
        # keys when both are set, then ``api_key``, then ``iam_api_key``.
        section = {**(config.get("ibm") or {}), **section}
        api_key = section.get("api_key") or section.get("iam_api_key")
        if api_key and not (section.get("access_key_id") and section.get("secret_access_key")):
            return S3Credentials(
                access_key_id=None,
                secret_access_key=None,
                iam_api_key=api_key,
                iam_endpoint=section.get("iam_endpoint"),
                service_instance_id=section.get("service_instance_id"),
            )
    return S3Credentials(
        access_key_id=section.get("access_key_id"),
        secret_access_key=section.get("secret_access_key"),
        session_token=section.get("session_token"),
    )
