"""Unit tests of pywren_deferrable.config: Connection extra -> Lithops config."""

from __future__ import annotations

import copy
import sys

import pytest

from pywren_deferrable.config import (
    DEFAULT_LOCALHOST_VERSION,
    S3Credentials,
    build_lithops_config,
    deep_merge,
    s3_credentials,
    storage_location,
)
from pywren_deferrable.job import StorageLocation

MINIO_EXTRA = {
    "lithops": {"backend": "localhost", "storage": "minio"},
    "minio": {"endpoint": "http://127.0.0.1:9000", "storage_bucket": "lithops-data"},
}

CE_EXTRA = {
    "lithops": {"backend": "code_engine", "storage": "ibm_cos"},
    "code_engine": {"namespace": "ns1", "region": "eu-de", "runtime_memory": 512},
    "ibm": {"iam_api_key": "iam-key"},
    "ibm_cos": {"region": "eu-de", "storage_bucket": "cos-bucket"},
}


# -- build_lithops_config ---------------------------------------------------------------


def test_extra_sections_pass_through():
    config = build_lithops_config(CE_EXTRA)
    assert config["code_engine"] == {"namespace": "ns1", "region": "eu-de", "runtime_memory": 512}
    assert config["ibm"] == {"iam_api_key": "iam-key"}
    assert config["ibm_cos"] == {"region": "eu-de", "storage_bucket": "cos-bucket"}
    assert config["lithops"] == {"backend": "code_engine", "storage": "ibm_cos", "data_cleaner": False}
    assert "localhost" not in config


def test_section_overrides_deep_merge_without_mutating_inputs():
    extra = copy.deepcopy(CE_EXTRA)
    overrides = {
        "code_engine": {"runtime_memory": 1024, "runtime": "me/rt:1"},
        "ibm_cos": {"storage_bucket": "other-bucket"},
        "lithops": {"log_level": "DEBUG"},
    }
    extra_before = copy.deepcopy(extra)
    overrides_before = copy.deepcopy(overrides)

    config = build_lithops_config(extra, overrides=overrides)

    assert config["code_engine"] == {
        "namespace": "ns1",
        "region": "eu-de",
        "runtime_memory": 1024,
        "runtime": "me/rt:1",
    }
    assert config["ibm_cos"] == {"region": "eu-de", "storage_bucket": "other-bucket"}
    assert config["lithops"] == {
        "backend": "code_engine",
        "storage": "ibm_cos",
        "log_level": "DEBUG",
        "data_cleaner": False,
    }
    assert extra == extra_before
    assert overrides == overrides_before
    # the result shares no mutable state with the inputs
    config["code_engine"]["namespace"] = "changed"
    config["ibm_cos"]["storage_bucket"] = "changed"
    assert extra == extra_before
    assert overrides == overrides_before


def test_flat_overrides_land_in_compute_backend_section():
    extra = copy.deepcopy(CE_EXTRA)
    overrides = {"runtime": "me/rt:2", "runtime_memory": 2048, "opts": {"a": 1}}
    before = copy.deepcopy(overrides)
    config = build_lithops_config(extra, overrides=overrides)
    assert config["code_engine"] == {
        "namespace": "ns1",
        "region": "eu-de",
        "runtime_memory": 2048,
        "runtime": "me/rt:2",
        "opts": {"a": 1},
    }
    assert "runtime" not in config["lithops"]
    assert "runtime_memory" not in config["lithops"]
    assert extra == CE_EXTRA
    assert overrides == before
    config["code_engine"]["opts"]["a"] = 2
    assert overrides == before


def test_flat_backend_and_storage_keys_land_in_lithops_section():
    extra = {
        "minio": {"endpoint": "http://h:9000", "storage_bucket": "b"},
        "aws_lambda": {"region": "us-east-1"},
    }
    config = build_lithops_config(
        extra, overrides={"backend": "aws_lambda", "storage": "minio", "runtime_memory": 300}
    )
    assert config["lithops"] == {"backend": "aws_lambda", "storage": "minio", "data_cleaner": False}
    # the flat runtime key follows the backend chosen by the same override
    assert config["aws_lambda"] == {"region": "us-east-1", "runtime_memory": 300}
    assert "localhost" not in config


def test_flat_runtime_goes_to_localhost_when_backend_defaults():
    config = build_lithops_config({}, overrides={"runtime": "/opt/py/bin/python", "runtime_memory": 64})
    assert config["localhost"] == {
        "runtime": "/opt/py/bin/python",
        "runtime_memory": 64,
        "version": DEFAULT_LOCALHOST_VERSION,
    }


def test_data_cleaner_forced_false():
    extra = {"lithops": {"backend": "localhost", "storage": "localhost", "data_cleaner": True}}
    config = build_lithops_config(extra)
    assert config["lithops"]["data_cleaner"] is False
    assert extra["lithops"]["data_cleaner"] is True
    config = build_lithops_config({}, overrides={"lithops": {"data_cleaner": True}})
    assert config["lithops"]["data_cleaner"] is False


def test_login_password_fill_minio_keys():
    config = build_lithops_config(MINIO_EXTRA, login="AKIDLOGIN", password="SECRETPW")
    assert config["minio"] == {
        "endpoint": "http://127.0.0.1:9000",
        "storage_bucket": "lithops-data",
        "access_key_id": "AKIDLOGIN",
        "secret_access_key": "SECRETPW",
    }
    assert "access_key_id" not in MINIO_EXTRA["minio"]


def test_login_password_do_not_override_explicit_keys():
    extra = copy.deepcopy(MINIO_EXTRA)
    extra["minio"].update(access_key_id="EXPLICIT_ID", secret_access_key="EXPLICIT_SECRET")
    config = build_lithops_config(extra, login="AKIDLOGIN", password="SECRETPW")
    assert config["minio"]["access_key_id"] == "EXPLICIT_ID"
    assert config["minio"]["secret_access_key"] == "EXPLICIT_SECRET"


def test_host_fills_endpoint_only_when_missing():
    extra = {"lithops": {"backend": "localhost", "storage": "minio"}, "minio": {"storage_bucket": "b"}}
    config = build_lithops_config(extra, host="http://minio.local:9000")
    assert config["minio"]["endpoint"] == "http://minio.local:9000"
    assert "endpoint" not in extra["minio"]
    config = build_lithops_config(MINIO_EXTRA, host="http://minio.local:9000")
    assert config["minio"]["endpoint"] == "http://127.0.0.1:9000"


def test_host_does_not_fill_aws_s3_endpoint():
    extra = {"lithops": {"backend": "aws_lambda", "storage": "aws_s3"}, "aws_s3": {"storage_bucket": "bkt"}}
    config = build_lithops_config(extra, host="http://ignored:9000", login="L", password="P")
    assert config["aws_s3"] == {"storage_bucket": "bkt", "access_key_id": "L", "secret_access_key": "P"}


def test_localhost_defaults():
    config = build_lithops_config(None)
    assert config["lithops"] == {
        "backend": "localhost",
        "mode": "localhost",
        "storage": "localhost",
        "data_cleaner": False,
    }
    assert config["localhost"]["runtime"] == sys.executable
    assert config["localhost"]["version"] == 1
    assert build_lithops_config({}) == config


def test_localhost_explicit_values_kept():
    extra = {"localhost": {"runtime": "python3.12", "version": 2}}
    config = build_lithops_config(extra)
    assert config["localhost"] == {"runtime": "python3.12", "version": 2}


@pytest.mark.parametrize(
    ("extra", "overrides", "name"),
    [
        ({"lithops": {"backend": "nope", "storage": "minio"}}, None, "nope"),
        ({"lithops": {"storage": "minio"}}, {"backend": "lambdaX"}, "lambdaX"),
        ({"lithops": {"backend": "localhost", "storage": "s4"}}, None, "s4"),
        ({}, {"storage": "nope_storage"}, "nope_storage"),
        ({}, {"lithops": {"storage": "dropbox"}}, "dropbox"),
    ],
)
def test_unknown_backend_or_storage_raises_naming_it(extra, overrides, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        build_lithops_config(extra, overrides=overrides)


def test_unknown_backend_without_storage_names_it():
    with pytest.raises(ValueError, match="'nope'"):
        build_lithops_config({}, overrides={"lithops": {"backend": "nope"}})


def test_non_localhost_backend_without_storage_raises():
    with pytest.raises(ValueError, match="storage"):
        build_lithops_config({"lithops": {"backend": "code_engine"}})


@pytest.mark.parametrize("value", ["x", 3, ["a"], None])
def test_non_dict_override_section_raises_type_error(value):
    with pytest.raises(TypeError, match=r"pywren_executor_config\['code_engine'\]"):
        build_lithops_config(CE_EXTRA, overrides={"code_engine": value})


def test_non_dict_overrides_raise_type_error():
    with pytest.raises(TypeError, match="pywren_executor_config must be a dict"):
        build_lithops_config({}, overrides="runtime=x")
    with pytest.raises(TypeError, match="pywren_executor_config keys"):
        build_lithops_config({}, overrides={1: "x"})


def test_non_dict_extra_raises_type_error():
    with pytest.raises(TypeError, match="extra"):
        build_lithops_config('{"lithops": {}}')


def test_deep_merge_does_not_mutate():
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    override = {"a": {"b": 2, "e": {"f": 3}}, "d": {"x": 1}}
    base_before = copy.deepcopy(base)
    override_before = copy.deepcopy(override)
    merged = deep_merge(base, override)
    assert merged == {"a": {"b": 2, "c": [1], "e": {"f": 3}}, "d": {"x": 1}}
    merged["a"]["c"].append(2)
    merged["a"]["e"]["f"] = 4
    assert base == base_before
    assert override == override_before


# -- storage_location -------------------------------------------------------------------


def test_storage_location_minio_keeps_endpoint():
    config = build_lithops_config(MINIO_EXTRA, login="L", password="P")
    assert storage_location(config) == StorageLocation(
        kind="s3",
        bucket="lithops-data",
        backend="minio",
        endpoint="http://127.0.0.1:9000",
        region=None,
    )


def test_storage_location_ibm_cos_region_only():
    config = build_lithops_config(CE_EXTRA)
    assert storage_location(config) == StorageLocation(
        kind="s3",
        bucket="cos-bucket",
        backend="ibm_cos",
        endpoint="https://s3.eu-de.cloud-object-storage.appdomain.cloud",
        region="eu-de",
    )


def test_storage_location_ibm_cos_explicit_endpoint_kept():
    config = {
        "lithops": {"storage": "ibm_cos"},
        "ibm_cos": {"endpoint": "https://s3.private.eu-de.example", "storage_bucket": "b1"},
    }
    location = storage_location(config)
    assert location.endpoint == "https://s3.private.eu-de.example"
    assert location.region is None


def test_storage_location_aws_s3_region_from_aws_section():
    config = {
        "lithops": {"storage": "aws_s3"},
        "aws": {"region": "eu-west-1"},
        "aws_s3": {"storage_bucket": "bkt"},
    }
    location = storage_location(config)
    assert (location.backend, location.region, location.endpoint) == ("aws_s3", "eu-west-1", None)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"lithops": {"storage": "aws_s3"}, "aws_s3": {"storage_bucket": "bkt"}}, "region"),
        ({"lithops": {"storage": "minio"}, "minio": {"endpoint": "http://h:9000"}}, "storage_bucket"),
        ({"lithops": {"storage": "minio"}, "minio": {"storage_bucket": "b"}}, "endpoint"),
        ({"lithops": {"storage": "ibm_cos"}, "ibm_cos": {"storage_bucket": "b"}}, "region"),
        # Lithops storages that no module of pywren_deferrable/storages/ polls.
        ({"lithops": {"storage": "swift"}, "swift": {"storage_bucket": "b"}}, "'swift'"),
        ({"lithops": {"storage": "infinispan"}, "infinispan": {}}, "'infinispan'"),
    ],
)
def test_storage_location_rejects(config, match):
    with pytest.raises(ValueError, match=match):
        storage_location(config)


def test_storage_location_localhost():
    from lithops.constants import LITHOPS_TEMP_DIR

    location = storage_location(build_lithops_config({}))
    assert location == StorageLocation(
        kind="localhost", bucket="storage", backend="localhost", root=LITHOPS_TEMP_DIR
    )


# -- s3_credentials ---------------------------------------------------------------------


def test_s3_credentials_values_and_repr_hide_secrets():
    config = build_lithops_config(MINIO_EXTRA, login="AKIDVISIBLE123", password="TOPSECRETVALUE456")
    creds = s3_credentials(config)
    assert creds.access_key_id == "AKIDVISIBLE123"
    assert creds.secret_access_key == "TOPSECRETVALUE456"
    assert creds.session_token is None
    for text in (repr(creds), str(creds), f"{creds!r}", repr([creds]), repr({"c": creds})):
        assert "TOPSECRETVALUE456" not in text
        assert "AKIDVISIBLE123" not in text
    assert repr(creds) == "S3Credentials(access_key_id=***)"


def test_s3_credentials_repr_with_session_token():
    creds = S3Credentials("AKID999", "SECRET999", session_token="TOKEN999")
    text = repr(creds)
    assert "SECRET999" not in text
    assert "AKID999" not in text
    assert "TOKEN999" not in text
    assert repr(S3Credentials(None, None)) == "S3Credentials(access_key_id=None)"


def test_s3_credentials_aws_s3_merges_aws_section():
    config = {
        "lithops": {"storage": "aws_s3"},
        "aws": {"access_key_id": "AWSID", "secret_access_key": "AWSSECRET", "session_token": "TOK"},
        "aws_s3": {"storage_bucket": "b"},
    }
    assert s3_credentials(config) == S3Credentials("AWSID", "AWSSECRET", "TOK")


def test_s3_credentials_ibm_cos_api_key_with_hmac_ok():
    config = build_lithops_config(
        {"lithops": {"backend": "code_engine", "storage": "ibm_cos"}, "ibm_cos": {"api_key": "k"}},
        login="HMACID",
        password="HMACSECRET",
    )
    assert s3_credentials(config) == S3Credentials("HMACID", "HMACSECRET", None)
