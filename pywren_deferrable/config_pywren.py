"""Airflow Connection -> pywren-ibm-cloud 1.7.3 config (the ``pywren`` engine), as pure functions.

With ``"engine": "pywren"`` in its extra, the Connection's extra *is* a pywren-ibm-cloud
config: the sections a pywren user has in ``~/.pywren_config`` (``pywren``, ``ibm_cf``,
``ibm_cos``, ``ceph``, ``localhost``...). As for Lithops, login/password may carry the
storage HMAC keys and host the storage endpoint. Nothing here imports pywren.
"""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Any

from pywren_deferrable.config_sections import deep_merge, fill_connection_keys
from pywren_deferrable.job import STORAGE_LOCALHOST, STORAGE_S3, StorageLocation

# pywren-ibm-cloud 1.7.3's backends, by config section name.
PYWREN_COMPUTE_BACKENDS = frozenset({"localhost", "ibm_cf", "docker", "knative", "openwhisk", "cloudrun"})
PYWREN_STORAGE_BACKENDS = frozenset({"localhost", "ibm_cos", "ceph", "swift", "infinispan", "gcsfs"})
# The storage backends the trigger can poll: S3 protocol, or this machine's disk.
PYWREN_S3_STORAGE_BACKENDS = frozenset({"ibm_cos", "ceph"})
PYWREN_SECTIONS = PYWREN_COMPUTE_BACKENDS | PYWREN_STORAGE_BACKENDS | {"pywren", "rabbitmq"}
# Lithops' flat ``FunctionExecutor`` keys and their pywren names (pywren_executor_config
# is written once for both engines).
LITHOPS_KEY_NAMES = {"backend": "compute_backend", "storage": "storage_backend"}
DEFAULT_LOCALHOST_BUCKET = "storage"
IBM_COS_PUBLIC_ENDPOINT = "https://s3.{}.cloud-object-storage.appdomain.cloud"


def pywren_localhost_storage_root() -> str:
    """Where pywren's localhost storage keeps its buckets (``pywren.config.STORAGE_FOLDER``)."""
    return os.path.join(os.path.realpath(tempfile.gettempdir()), "pywren-data")


def _check_backend_names(section: dict[str, Any]) -> None:
    compute, storage = section.get("compute_backend"), section.get("storage_backend")
    if compute not in PYWREN_COMPUTE_BACKENDS:
        raise ValueError(
            f"unknown pywren compute backend {compute!r}; expected one of {sorted(PYWREN_COMPUTE_BACKENDS)}"
        )
    if storage not in PYWREN_STORAGE_BACKENDS:
        raise ValueError(
            f"unknown pywren storage backend {storage!r}; expected one of {sorted(PYWREN_STORAGE_BACKENDS)}"
        )


def build_pywren_config(
    extra: dict[str, Any],
    normalized_overrides: dict[str, Any],
    *,
    login: str | None = None,
    password: str | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    """Build the pywren-ibm-cloud config for one job.

    :param extra: the Connection's extra, without its ``engine`` key.
    :param normalized_overrides: the operator's ``pywren_executor_config`` after
        :func:`pywren_deferrable.config.normalize_overrides`.
    :param login: storage access key (HMAC), if set on the Connection.
    :param password: storage secret key (HMAC), if set on the Connection.
    :param host: storage endpoint, used when the storage section has none.
    """
    if "lithops" in extra:
        raise ValueError(
            "engine 'pywren' takes a pywren-ibm-cloud config (a 'pywren' section), but the Connection "
            "extra has a 'lithops' section; drop 'engine' to use Lithops"
        )
    overrides = copy.deepcopy(normalized_overrides)
    # Flat keys are pywren FunctionExecutor arguments, which pywren puts in its own section.
    flat: dict[str, Any] = overrides.pop("__backend__", {})
    for key, value in overrides.pop("lithops", {}).items():
        if key not in LITHOPS_KEY_NAMES:
            raise ValueError(
                f"pywren_executor_config: {key!r} is a Lithops setting with no pywren-ibm-cloud "
                f"equivalent (the Connection's engine is 'pywren')"
            )
        flat[LITHOPS_KEY_NAMES[key]] = value
    config = deep_merge(copy.deepcopy(extra), overrides)
    section = config.setdefault("pywren", {})
    if not isinstance(section, dict):
        raise TypeError("the 'pywren' section of the config must be a dict")
    section.update(flat)
    # Unlike pywren (ibm_cf + ibm_cos), default to this machine, as the Lithops engine does.
    compute = section.setdefault("compute_backend", "localhost")
    storage = section.setdefault("storage_backend", "localhost" if compute == "localhost" else "ibm_cos")
    _check_backend_names(section)
    if storage == "localhost":
        section.setdefault("storage_bucket", DEFAULT_LOCALHOST_BUCKET)
    if not section.get("storage_bucket"):
        raise ValueError("the 'pywren' section of the config needs a 'storage_bucket'")
    # Cleaning is ours: after the results are fetched, and only the job's own prefixes.
    section["data_cleaner"] = False
    if storage in PYWREN_S3_STORAGE_BACKENDS:
        fill_connection_keys(
            config.setdefault(storage, {}),
            ("access_key", "secret_key"),
            login=login,
            password=password,
            host=host,
        )
    return config


def pywren_storage_location(config: dict[str, Any]) -> StorageLocation:
    """Where a pywren job submitted with ``config`` keeps its objects (no secrets)."""
    section = config["pywren"]
    storage, bucket = section["storage_backend"], section["storage_bucket"]
    if storage == "localhost":
        return StorageLocation(
            kind=STORAGE_LOCALHOST, bucket=bucket, backend="localhost", root=pywren_localhost_storage_root()
        )
    if storage not in PYWREN_S3_STORAGE_BACKENDS:
        raise ValueError(
            f"pywren storage backend {storage!r} cannot be polled by the trigger; use one of "
            f"{sorted(PYWREN_S3_STORAGE_BACKENDS)} or localhost"
        )
    storage_section = config.get(storage) or {}
    endpoint = storage_section.get("endpoint")
    region = section.get("storage_backend_region") or storage_section.get("region")
    if storage == "ibm_cos" and not endpoint:
        if not region:
            raise ValueError("the 'ibm_cos' storage section needs an 'endpoint' or a 'region'")
        endpoint = IBM_COS_PUBLIC_ENDPOINT.format(region)
    if storage == "ibm_cos" and endpoint:
        endpoint = endpoint.replace("http:", "https:")  # as pywren's ibm_cos backend does
    if not endpoint:
        raise ValueError(f"the {storage!r} storage section needs an 'endpoint'")
    return StorageLocation(kind=STORAGE_S3, bucket=bucket, backend=storage, endpoint=endpoint, region=region)


def pywren_s3_keys(config: dict[str, Any]) -> dict[str, Any]:
    """The storage keys of a pywren config, in :class:`~pywren_deferrable.config.S3Credentials`'
    names: HMAC keys, or for IBM COS without both of them its ``api_key``/``iam_api_key``
    (the order pywren's ibm_cos backend tries them in)."""
    storage = config["pywren"]["storage_backend"]
    section = dict(config.get(storage) or {})
    if storage == "ibm_cos":
        # pywren's ibm_cos config takes the top-level ``ibm`` section over its own keys.
        section.update(config.get("ibm") or {})
    access_key, secret_key = section.get("access_key"), section.get("secret_key")
    api_key = section.get("api_key") or section.get("iam_api_key")
    if storage == "ibm_cos" and api_key and not (access_key and secret_key):
        return {"iam_api_key": api_key, "iam_endpoint": section.get("iam_endpoint")}
    return {"access_key_id": access_key, "secret_access_key": secret_key}
