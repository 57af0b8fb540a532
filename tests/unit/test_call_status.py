"""Unit tests of pywren_deferrable.call_status: parsing Lithops 3.8 status.json safely."""

from __future__ import annotations

import base64
import json
import pickle
import random
import uuid
import zlib
from pathlib import Path

import pytest

from pywren_deferrable.call_status import (
    MAX_LOG_BYTES,
    StatusParseError,
    decode_logs,
    extract_traceback,
    parse_status,
    summarize_traceback,
)

TRACEBACK = 'Traceback (most recent call last):\n  File "<dynamic-code>", line 9, in f\nValueError: boom 3'

LOG_TEXT = (
    "2025-01-01 00:00:00,000 [INFO] jobrunner.py:300 -- Going to execute 'f()'\n"
    "---------------------- FUNCTION LOG ----------------------\n"
    "hello from the function\n"
    "----------------------- EXCEPTION !-----------------------\n"
    f"{TRACEBACK}\n"
    "----------------------------------------------------------\n"
    "2025-01-01 00:00:01,000 [INFO] jobrunner.py:400 -- Success sending result\n"
)


def encode_logs(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(zlib.compress(raw)).decode()


def success_status(value, **extra) -> bytes:
    pickled = pickle.dumps(value)
    data = {
        "exception": False,
        "result": repr(pickled),  # Lithops writes str(bytes) into the stats file
        "func_result_size": float(len(pickled)),
        "worker_start_tstamp": 1700000000.25,
        "worker_end_tstamp": 1700000001.5,
        "call_id": "00002",
        "job_id": "M000",
        "executor_id": "a1b2c3-0",
        "logs": encode_logs("---------------------- FUNCTION LOG ----------------------\nok\n"),
    }
    data.update(extra)
    return json.dumps(data).encode()


def failure_status(log_text: str = LOG_TEXT, **extra) -> bytes:
    data = {
        "exception": True,
        "exc_info": repr(pickle.dumps((ValueError, ValueError("boom 3"), None))),
        "func_result_size": 0.0,
        "worker_start_tstamp": 1700000000.0,
        "logs": encode_logs(log_text),
    }
    data.update(extra)
    return json.dumps(data).encode()


# -- success --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [42, "text", {"a": [1, 2, (3, 4)]}, b"\x00\xff'\"", [None, 1.5], "é\n\\"])
def test_inline_result_unpickles_to_value(value):
    status = parse_status(success_status(value), "00002")
    assert status.call_id == "00002"
    assert status.failed is False
    assert status.error is None
    assert status.traceback is None
    assert status.inline_result == pickle.dumps(value)
    assert pickle.loads(status.inline_result) == value
    assert status.has_output_object is False
    assert status.worker_start == 1700000000.25


def test_parse_status_accepts_str_input():
    status = parse_status(success_status([1, 2]).decode(), "00007")
    assert pickle.loads(status.inline_result) == [1, 2]
    assert status.call_id == "00007"


def test_output_object_when_size_and_no_result():
    raw = json.dumps({"exception": False, "func_result_size": 20000.0, "worker_start_tstamp": 5}).encode()
    status = parse_status(raw, "00003")
    assert status.inline_result is None
    assert status.has_output_object is True
    assert status.failed is False
    assert status.worker_start == 5.0


@pytest.mark.parametrize(
    "data",
    [
        {"exception": False, "func_result_size": 0},
        {"exception": False, "func_result_size": 0.0, "result": None},
        {"exception": False, "func_result_size": 0, "worker_new_stat": 1, "host_x": 2, "func_y": 3},
    ],
)
def test_no_result_no_output_object(data):
    status = parse_status(json.dumps(data), "00000")
    assert status.inline_result is None
    assert status.has_output_object is False
    assert status.failed is False
    assert status.worker_start is None


def test_inline_result_with_size_is_not_output_object():
    status = parse_status(success_status("x" * 100), "00001")
    assert status.has_output_object is False
    assert pickle.loads(status.inline_result) == "x" * 100


# -- failure --------------------------------------------------------------------------


def test_failure_yields_error_and_traceback():
    status = parse_status(failure_status(), "00004")
    assert status.failed is True
    assert status.error == "ValueError: boom 3"
    assert status.traceback == TRACEBACK
    assert status.inline_result is None
    assert status.has_output_object is False
    assert status.worker_start == 1700000000.0


def test_failure_ignores_result_field():
    raw = failure_status(result="__import__('os').system('true')", func_result_size=50.0)
    status = parse_status(raw, "00004")
    assert status.failed is True
    assert status.inline_result is None
    assert status.has_output_object is False


@pytest.mark.parametrize("logs", [None, "", "not base64 at all", encode_logs("no marker in this log\n")])
def test_failure_without_traceback_has_generic_error(logs):
    raw = json.dumps({"exception": True, "logs": logs})
    status = parse_status(raw, "00005")
    assert status.failed is True
    assert status.traceback is None
    assert status.error == "the call raised an exception (no traceback in its log)"


def test_long_error_line_is_cut():
    message = "E" * 1000
    log = LOG_TEXT.replace("ValueError: boom 3", f"RuntimeError: {message}")
    status = parse_status(failure_status(log), "00006")
    assert status.error == f"RuntimeError: {message}"[:300]
    assert len(status.error) == 300
    assert status.traceback.endswith(message)


def test_extract_and_summarize_traceback():
    assert extract_traceback(LOG_TEXT) == TRACEBACK
    assert extract_traceback("no exception here") is None
    assert extract_traceback(None) is None
    assert summarize_traceback(TRACEBACK) == "ValueError: boom 3"
    assert summarize_traceback(TRACEBACK + "\n\n   \n") == "ValueError: boom 3"
    assert summarize_traceback(None) is None


# -- never evaluate -------------------------------------------------------------------


def test_expression_result_is_not_evaluated():
    marker = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    assert not marker.exists()
    payload = f"__import__('os').system('touch {marker}')"
    raw = json.dumps({"exception": False, "result": payload, "func_result_size": 10})
    with pytest.raises(StatusParseError, match="result"):
        parse_status(raw, "00000")
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        "b'x' + b'y'",
        "bytes(3)",
        "'a string'",
        "42",
        "[b'x']",
        "{'a': b'x'}",
        "b'unterminated",
        "",
        "lambda: 1",
        "(b'x').upper()",
    ],
)
def test_non_bytes_literal_result_raises(payload):
    raw = json.dumps({"exception": False, "result": payload})
    with pytest.raises(StatusParseError, match="result"):
        parse_status(raw, "00000")


@pytest.mark.parametrize("value", [42, ["b'x'"], {"a": 1}, True])
def test_non_string_result_raises(value):
    raw = json.dumps({"exception": False, "result": value})
    with pytest.raises(StatusParseError, match="result"):
        parse_status(raw, "00000")


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"{", b"\xff\xfe\x00", "{'exception': False}", b"[1, 2]", b'"str"', b"null", b"3"],
)
def test_non_json_or_non_object_raises(raw):
    with pytest.raises(StatusParseError, match="00009"):
        parse_status(raw, "00009")


# A status.json comes from a remote worker: the poller only catches StatusParseError, so
# anything else escaping parse_status crashes the trigger instead of failing one call.


@pytest.mark.parametrize("payload", ["-" * 5000 + "1", "not " * 20000 + "1", "1+" * 5000 + "1"])
def test_deeply_nested_result_raises_status_parse_error(payload):
    raw = json.dumps({"exception": False, "result": payload})
    with pytest.raises(StatusParseError):
        parse_status(raw, "00000")


def test_non_numeric_result_size_raises_status_parse_error():
    raw = json.dumps({"exception": False, "func_result_size": "12"})
    with pytest.raises(StatusParseError):
        parse_status(raw, "00000")


def test_non_string_logs_do_not_escape_as_type_error():
    raw = json.dumps({"exception": True, "logs": 12345})
    try:
        status = parse_status(raw, "00000")
    except StatusParseError:
        return
    assert status.failed is True
    assert status.traceback is None


# -- decode_logs ----------------------------------------------------------------------


def test_decode_logs_round_trip():
    assert decode_logs(encode_logs(LOG_TEXT)) == LOG_TEXT
    assert decode_logs(None) is None
    assert decode_logs("") is None


@pytest.mark.parametrize(
    "garbage",
    [
        "hello",
        "abcd",
        "AAAA",
        "é",
        base64.b64encode(b"plain text, not zlib").decode(),
        base64.b64encode(b"\x78\x9c" + b"\x00" * 20).decode(),
    ],
)
def test_decode_logs_garbage_returns_none(garbage):
    assert decode_logs(garbage) is None


def test_decode_logs_non_alphabet_garbage_returns_none():
    assert decode_logs("!!!!") is None


def test_decode_logs_respects_limit():
    rng = random.Random(1234)
    text = "".join(rng.choice("abcdefghij \n") for _ in range(1024 * 1024))
    decoded = decode_logs(encode_logs(text))
    assert decoded is not None
    assert len(decoded) <= MAX_LOG_BYTES
    assert decoded == text[:MAX_LOG_BYTES]


def test_decode_logs_custom_limit_and_multibyte():
    text = "é" * 1000  # 2 bytes each
    decoded = decode_logs(encode_logs(text), limit=101)
    assert len(decoded.encode("utf-8", errors="replace")) <= 101 + 2
    assert decoded.startswith("é" * 50)
    assert len(decoded) == 51  # 50 full characters and one replacement for the cut byte
    assert decoded[-1] == "\ufffd"


def test_failure_with_huge_log_parses_within_limit():
    filler = "x" * (2 * MAX_LOG_BYTES)
    status = parse_status(failure_status(LOG_TEXT + filler), "00001")
    assert status.error == "ValueError: boom 3"
    # the exception block after the limit is never seen
    status = parse_status(failure_status(filler + LOG_TEXT), "00001")
    assert status.failed is True
    assert status.traceback is None
    assert status.error == "the call raised an exception (no traceback in its log)"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"exception": False}, "no func_result_size"),
        ({"exception": False, "func_result_size": 0, "results_v2": "x"}, "'results_v2'"),
        ({"exception": False, "func_result_size": 0, "partial_status": True}, "'partial_status'"),
        ({"exception": False, "func_result_size": 0.0, "new_futures": None, "futures": "b''"}, "'futures'"),
    ],
)
def test_a_status_without_a_result_we_understand_is_refused_not_none(data, says):
    """Only a status that says "None" in Lithops 3.8's words gives None: any other
    success without a result is an error naming what was not understood."""
    with pytest.raises(
        StatusParseError, match=rf"call 00000 has no result this provider understands.*{says}"
    ):
        parse_status(json.dumps(data), "00000")
