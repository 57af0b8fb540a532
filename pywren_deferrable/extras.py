"""Which Python modules each Lithops backend imports, and which extra installs them.

Lithops imports its cloud SDKs only when a backend is first used, deep inside
``FunctionExecutor``: a Connection naming a backend whose SDK is missing failed with a bare
``ModuleNotFoundError: No module named 'ibm_cloud_sdk_core'`` from the middle of Lithops.
This table (checked against Lithops 3.8's backend imports) lets the provider say, before
Lithops is called, which extra to install: ``pip install "pywren-deferrable[ibm]"``.
The check only looks modules up (``importlib.util.find_spec``): it imports nothing.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

PACKAGE = "pywren-deferrable"

# The modules Lithops' backend packages import (lithops/serverless/backends/<name>,
# lithops/standalone/backends/<name>, lithops/storage/backends/<name>, and what those import:
# lithops/util/ibm_token_manager.py for ibm_cos and ibm_cf) -> the extra that installs them.
# Backends that need nothing beyond Lithops' own dependencies (localhost, openwhisk,
# singularity, vm, swift, infinispan) are not listed.
_IBM_TOKEN = ("ibm_botocore", "ibm_cloud_sdk_core")
_GOOGLE_API = ("googleapiclient", "google_auth_httplib2", "httplib2", "google.auth", "google.oauth2")
COMPUTE_MODULES: dict[str, tuple[tuple[str, ...], str]] = {
    "ibm_cf": (_IBM_TOKEN, "ibm"),
    "code_engine": (("ibm_cloud_sdk_core", "ibm_code_engine_sdk"), "ibm"),
    "ibm_vpc": (("ibm_cloud_sdk_core", "ibm_vpc"), "ibm"),
    "aws_lambda": (("boto3", "botocore"), "aws"),
    "aws_batch": (("boto3", "botocore"), "aws"),
    "aws_ec2": (("boto3", "botocore"), "aws"),
    "gcp_functions": ((*_GOOGLE_API, "google.cloud.pubsub_v1"), "gcp"),
    "gcp_cloudrun": (_GOOGLE_API, "gcp"),
    "azure_functions": (("azure.core", "azure.storage.queue"), "azure"),
    "azure_containers": (("azure.storage.queue",), "azure"),
    "azure_vms": (("azure.core", "azure.identity", "azure.mgmt.compute", "azure.mgmt.network"), "azure"),
    "aliyun_fc": (("alibabacloud_fc20230330", "alibabacloud_tea_openapi", "darabonba"), "aliyun"),
    "oracle_f": (("oci",), "oracle"),
    "k8s": (("kubernetes",), "kubernetes"),
    "knative": (("kubernetes",), "knative"),
}
STORAGE_MODULES: dict[str, tuple[tuple[str, ...], str]] = {
    "ibm_cos": (("ibm_boto3", *_IBM_TOKEN), "ibm"),
    "aws_s3": (("boto3", "botocore"), "aws"),
    "minio": (("boto3", "botocore"), "minio"),
    "ceph": (("boto3", "botocore"), "ceph"),
    "gcp_storage": (("google.cloud.storage", "google.api_core"), "gcp"),
    "azure_storage": (("azure.core", "azure.storage.blob"), "azure"),
    "aliyun_oss": (("oss2",), "aliyun"),
    "oracle_oss": (("oci",), "oracle"),
    "redis": (("redis",), "redis"),
}


class MissingExtraError(ImportError):
    """A backend the Connection names needs modules that are not installed."""


@dataclass(frozen=True)
class MissingModules:
    """The modules one backend lacks, and the extra that installs them."""

    kind: str  # "compute" or "storage"
    backend: str
    modules: tuple[str, ...]
    extra: str

    def describe(self) -> str:
        return (
            f"the {self.kind} backend {self.backend!r} needs {', '.join(self.modules)} "
            f'(pip install "{PACKAGE}[{self.extra}]")'
        )


def module_missing(name: str) -> bool:
    """Whether ``name`` (dotted) cannot be found; a missing parent package counts as missing."""
    try:
        return importlib.util.find_spec(name) is None
    except (ModuleNotFoundError, ValueError):
        return True


def missing_modules(compute: str | None, storage: str | None) -> list[MissingModules]:
    """What the compute backend ``compute`` and the storage backend ``storage`` lack."""
    found: list[MissingModules] = []
    for kind, backend, table in (
        ("compute", compute, COMPUTE_MODULES),
        ("storage", storage, STORAGE_MODULES),
    ):
        if backend is None or backend not in table:
            continue
        modules, extra = table[backend]
        missing = tuple(m for m in modules if module_missing(m))
        if missing:
            found.append(MissingModules(kind, backend, missing, extra))
    return found


def check_backend_modules(config: dict[str, Any]) -> None:
    """Raise :class:`MissingExtraError` naming the extra(s) to install when the Lithops
    config's compute or storage backend cannot be imported here. A pywren-ibm-cloud config
    (no ``lithops`` section) is not checked: the ``pywren`` extra installs its engine."""
    section = config.get("lithops")
    if not isinstance(section, dict):
        return
    missing = missing_modules(section.get("backend"), section.get("storage"))
    if not missing:
        return
    extras = sorted({m.extra for m in missing})
    raise MissingExtraError(
        "Lithops cannot load the Connection's backends here: "
        + "; ".join(m.describe() for m in missing)
        + f'. Install them with: pip install "{PACKAGE}[{",".join(extras)}]"'
    )
