"""The ``lithops`` Connection's form fields, and how they become Lithops config sections.

A Lithops user can paste their whole config as the Connection's extra (sections such as
``{"lithops": {...}, "code_engine": {...}, "ibm_cos": {...}}``). The Airflow UI form,
connection URIs (``lithops://KEY:SECRET@endpoint?compute_backend=...``) and secrets
backends give flat string fields instead; :func:`expand_form_fields` turns those into
the same sections, so every way of defining the Connection builds the same config.
"""

from __future__ import annotations

import json
from typing import Any

from pywren_deferrable.config import S3_STORAGE_BACKENDS
from pywren_deferrable.config_sections import deep_merge

FORM_PREFIX = "extra__lithops__"
COMPUTE_BACKEND = "compute_backend"
STORAGE_BACKEND = "storage_backend"
STORAGE_BUCKET = "storage_bucket"
REGION = "region"
IAM_API_KEY = "iam_api_key"
RUNTIME = "runtime"
LITHOPS_CONFIG = "lithops_config"
ENGINE = "engine"
FORM_FIELDS = (
    ENGINE,
    COMPUTE_BACKEND,
    STORAGE_BACKEND,
    STORAGE_BUCKET,
    REGION,
    IAM_API_KEY,
    RUNTIME,
    LITHOPS_CONFIG,
)

# Backends that authenticate with an IBM Cloud IAM API key (the top-level ``ibm`` section).
IBM_BACKENDS = frozenset({"ibm_cf", "code_engine", "ibm_vpc", "ibm_cos"})


def _string_fields(extra: dict[str, Any]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in extra.items():
        name = key[len(FORM_PREFIX) :] if key.startswith(FORM_PREFIX) else key
        if name in FORM_FIELDS and value not in (None, ""):
            if not isinstance(value, str):
                raise TypeError(f"Connection field {name!r} must be a string, got {type(value).__name__}")
            fields[name] = value
    return fields


def _pasted_config(fields: dict[str, str]) -> dict[str, Any]:
    if LITHOPS_CONFIG not in fields:
        return {}
    try:
        pasted = json.loads(fields[LITHOPS_CONFIG])
    except ValueError as err:
        raise ValueError(f"the Connection field 'lithops_config' is not valid JSON: {err}") from None
    if not isinstance(pasted, dict):
        raise TypeError("the Connection field 'lithops_config' must be a JSON object of config sections")
    return pasted


def _pywren_sections(fields: dict[str, str]) -> dict[str, Any]:
    """The form fields as pywren-ibm-cloud config sections (``engine`` = ``pywren``)."""
    names = {
        COMPUTE_BACKEND: "compute_backend",
        STORAGE_BACKEND: "storage_backend",
        STORAGE_BUCKET: "storage_bucket",
        RUNTIME: "runtime",
        REGION: "storage_backend_region",
    }
    derived: dict[str, Any] = {"pywren": {key: fields[f] for f, key in names.items() if f in fields}}
    if IAM_API_KEY in fields and fields.get(STORAGE_BACKEND) == "ibm_cos":
        derived["ibm_cos"] = {"api_key": fields[IAM_API_KEY]}
    return derived


def expand_form_fields(extra: dict[str, Any] | None) -> dict[str, Any]:
    """Turn the flat form fields of a Connection extra into config sections (Lithops',
    or pywren-ibm-cloud's when the ``engine`` field says ``pywren``).

    Sections already in the extra win over what the fields would set: a pasted config
    is the most specific thing a user can say.
    """
    extra = dict(extra or {})
    fields = _string_fields(extra)
    sections: dict[str, Any] = {k: v for k, v in extra.items() if isinstance(v, dict)}
    if ENGINE in fields:
        sections[ENGINE] = fields[ENGINE]
    derived: dict[str, Any] = _pasted_config(fields)
    if fields.get(ENGINE) == "pywren":
        return deep_merge(deep_merge(derived, _pywren_sections(fields)), sections)
    compute = fields.get(COMPUTE_BACKEND)
    storage = fields.get(STORAGE_BACKEND)
    lithops = {k: v for k, v in ((("backend", compute), ("storage", storage))) if v}
    if lithops:
        derived = deep_merge(derived, {"lithops": lithops})
    if compute and (fields.get(REGION) or fields.get(RUNTIME)):
        section = {k: fields[f] for k, f in (("region", REGION), ("runtime", RUNTIME)) if f in fields}
        if compute != "localhost":
            derived = deep_merge(derived, {compute: section})
        elif RUNTIME in fields:
            derived = deep_merge(derived, {"localhost": {"runtime": fields[RUNTIME]}})
    if storage and storage != "localhost":
        section = {}
        if STORAGE_BUCKET in fields:
            section["storage_bucket"] = fields[STORAGE_BUCKET]
        if REGION in fields and storage in S3_STORAGE_BACKENDS:
            section["region"] = fields[REGION]
        if section:
            derived = deep_merge(derived, {storage: section})
    if IAM_API_KEY in fields:
        derived = deep_merge(derived, {"ibm": {"iam_api_key": fields[IAM_API_KEY]}})
        if storage == "ibm_cos":
            derived = deep_merge(derived, {"ibm_cos": {"api_key": fields[IAM_API_KEY]}})
    return deep_merge(derived, sections)


# Compute backends' required keys (Lithops 3.8), for test_connection: a missing one is
# reported before any job is submitted. ``ibm`` keys may sit in the backend's section.
REQUIRED_COMPUTE_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "code_engine": (("iam_api_key", "api_key"), ("region",)),
    "ibm_cf": (("iam_api_key", "api_key"), ("namespace", "namespace_id"), ("region", "endpoint")),
    "aws_lambda": (("execution_role",), ("region", "region_name")),
    "k8s": (),
    "localhost": (),
}


# pywren-ibm-cloud 1.7.3's, from its backends' config.py.
REQUIRED_PYWREN_COMPUTE_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "ibm_cf": (("endpoint",), ("namespace",)),
    "localhost": (),
}


def missing_compute_keys(config: dict[str, Any]) -> list[str]:
    """Required keys the compute backend's section lacks (each as ``a|b`` alternatives)."""
    if "pywren" in config and "lithops" not in config:
        backend = config["pywren"].get("compute_backend", "localhost")
        section = config.get(backend) or {}
        required = REQUIRED_PYWREN_COMPUTE_KEYS.get(backend, ())
        # pywren's ibm_cf also takes one section per region: {"regions": {"eu_gb": {...}}}.
        candidates = [section] + [r for r in (section.get("regions") or {}).values() if isinstance(r, dict)]
        lacking = [
            ["|".join(keys) for keys in required if not any(c.get(key) for key in keys)] for c in candidates
        ]
        return min(lacking, key=len)
    backend = config.get("lithops", {}).get("backend", "localhost")
    section = {**(config.get("ibm") or {}), **(config.get("aws") or {}), **(config.get(backend) or {})}
    missing = []
    for alternatives in REQUIRED_COMPUTE_KEYS.get(backend, ()):
        if not any(section.get(key) for key in alternatives):
            missing.append("|".join(alternatives))
    return missing


def provider_connection_fields() -> dict[str, Any]:
    """The ``conn-fields`` of the provider info (the Airflow 3 UI form)."""

    def string(label: str, description: str, **schema: Any) -> dict[str, Any]:
        return {"label": label, "description": description, "schema": {"type": ["string", "null"], **schema}}

    return {
        ENGINE: string(
            "Engine",
            "lithops (default) or pywren (the legacy pywren-ibm-cloud 1.7.3, Python 3.10 only); "
            "the other fields and the pasted config are then in that engine's terms",
            default="lithops",
            enum=["lithops", "pywren"],
        ),
        COMPUTE_BACKEND: string(
            "Compute backend",
            "Lithops compute backend: code_engine, ibm_cf, aws_lambda, k8s, localhost...",
            default="localhost",
        ),
        STORAGE_BACKEND: string(
            "Storage backend",
            "Lithops storage backend: ibm_cos, aws_s3, minio, ceph, localhost",
            default="ibm_cos",
        ),
        STORAGE_BUCKET: string("Storage bucket", "Bucket for Lithops' job data (storage_bucket)"),
        REGION: string("Region", "Region of the compute backend and of the storage (e.g. eu-de)"),
        IAM_API_KEY: string("IBM Cloud API key", "IAM API key (IBM backends)", format="password"),
        RUNTIME: string("Runtime", "Runtime image (cloud) or Python interpreter path (localhost)"),
        LITHOPS_CONFIG: string(
            "Lithops config (JSON)",
            "Any other Lithops config sections, as JSON; they win over the fields above",
        ),
    }


def provider_field_behaviour() -> dict[str, Any]:
    """The ``ui-field-behaviour`` of the provider info."""
    return {
        "hidden-fields": ["schema", "port"],
        "relabeling": {
            "host": "Storage endpoint (S3 / COS URL)",
            "login": "Storage HMAC access key id",
            "password": "Storage HMAC secret access key",
        },
        "placeholders": {
            "host": "https://s3.eu-de.cloud-object-storage.appdomain.cloud",
            COMPUTE_BACKEND: "code_engine",
            STORAGE_BACKEND: "ibm_cos",
            STORAGE_BUCKET: "my-lithops-bucket",
            REGION: "eu-de",
        },
    }
