"""The lithops Connection from the UI form, a URI, JSON or a pasted Lithops config."""

from __future__ import annotations

import json

import pytest

from pywren_deferrable.connection_form import expand_form_fields, missing_compute_keys
from pywren_deferrable.get_provider_info import get_provider_info
from pywren_deferrable.hooks.lithops import LithopsHook


def test_form_fields_become_sections() -> None:
    extra = {
        "compute_backend": "code_engine",
        "storage_backend": "ibm_cos",
        "storage_bucket": "my-bucket",
        "region": "eu-de",
        "iam_api_key": "KEY",
        "runtime": "me/rt:1",
    }
    assert expand_form_fields(extra) == {
        "lithops": {"backend": "code_engine", "storage": "ibm_cos"},
        "code_engine": {"region": "eu-de", "runtime": "me/rt:1"},
        "ibm_cos": {"storage_bucket": "my-bucket", "region": "eu-de", "api_key": "KEY"},
        "ibm": {"iam_api_key": "KEY"},
    }


def test_pasted_sections_win_over_fields_and_prefixed_names_work() -> None:
    extra = {
        "extra__lithops__compute_backend": "code_engine",
        "lithops_config": json.dumps({"code_engine": {"namespace": "ns"}}),
        "lithops": {"backend": "aws_lambda"},
    }
    config = expand_form_fields(extra)
    assert config["lithops"] == {"backend": "aws_lambda"}
    assert config["code_engine"] == {"namespace": "ns"}


@pytest.mark.parametrize(
    ("extra", "error", "match"),
    [
        ({"lithops_config": "{not json"}, ValueError, "lithops_config.*not valid JSON"),
        ({"lithops_config": "[1]"}, TypeError, "JSON object"),
        ({"compute_backend": 3}, TypeError, "compute_backend.*string"),
    ],
)
def test_bad_fields_are_named(extra, error, match) -> None:
    with pytest.raises(error, match=match):
        expand_form_fields(extra)


def test_uri_connection_builds_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = (
        "lithops://AKID:SECRET%2Fx@127.0.0.1%3A9000/?compute_backend=localhost&storage_backend=minio"
        "&storage_bucket=bkt"
    )
    monkeypatch.setenv("AIRFLOW_CONN_LITHOPS_URI", uri)
    config = LithopsHook("lithops_uri").get_config()
    assert config["lithops"]["backend"] == "localhost"
    assert config["minio"]["storage_bucket"] == "bkt"
    assert config["minio"]["access_key_id"] == "AKID"
    assert config["minio"]["secret_access_key"] == "SECRET/x"


def test_missing_compute_keys() -> None:
    assert missing_compute_keys({"lithops": {"backend": "code_engine"}}) == ["iam_api_key|api_key", "region"]
    assert (
        missing_compute_keys(
            {
                "lithops": {"backend": "code_engine"},
                "ibm": {"iam_api_key": "k"},
                "code_engine": {"region": "eu-de"},
            }
        )
        == []
    )
    assert missing_compute_keys({"lithops": {"backend": "localhost"}}) == []


def test_test_connection_reports_incomplete_compute_config(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {
        "conn_type": "lithops",
        "extra": {"compute_backend": "aws_lambda", "storage_backend": "localhost"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_INCOMPLETE", json.dumps(conn))
    ok, message = LithopsHook("incomplete").test_connection()
    assert not ok
    assert message == "the 'aws_lambda' compute backend config lacks: execution_role, region|region_name"


def test_test_connection_unknown_id() -> None:
    ok, message = LithopsHook("no_such_connection_here").test_connection()
    assert not ok and "no such Airflow Connection" in message


def test_provider_info_declares_the_form() -> None:
    info = get_provider_info()
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == "lithops"
    assert conn_type["hook-class-name"] == "pywren_deferrable.hooks.lithops.LithopsHook"
    assert conn_type["conn-fields"]["iam_api_key"]["schema"]["format"] == "password"
    assert set(conn_type["ui-field-behaviour"]["relabeling"]) == {"host", "login", "password"}


def test_provider_info_is_what_airflow_s_schema_accepts() -> None:
    import json
    from pathlib import Path

    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)
