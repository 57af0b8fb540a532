"""Unit tests of pywren_deferrable.call_status_pywren: pywren-ibm-cloud 1.7.3 status.json.

The ``*.status.json`` / ``*.output.pickle`` fixtures are real objects written by pywren
1.7.3 (``fixtures/pywren/capture_pywren_status.py``). Everything but the
``format_pywren_traceback`` tests runs without pywren installed.
"""

from __future__ import annotations

import ast
import json
import pickle
import pickletools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pywren_deferrable.call_status import MAX_ERROR_CHARS, MAX_INLINE_RESULT_CHARS, StatusParseError
from pywren_deferrable.call_status_pywren import (
    GENERIC_ERROR,
    MAX_EXC_INFO_BYTES,
    OutputDecodeError,
    decode_pywren_output,
    format_pywren_traceback,
    parse_pywren_status,
    pickled_exception,
    summarize_exc_info,
)

FIXTURES = Path(__file__).parent / "fixtures" / "pywren"

# fixture name -> the error parse_pywren_status must extract
EXPECTED_ERRORS = {
    "value_error": "ValueError: boom on 3",
    "driver_class_error": "__main__.DriverError: driver custom on 4",
    "module_class_error": "pw_fixture_errors.ModuleLevelError: module custom on 5",
    "unpicklable_error": "pw_fixture_errors.ModuleTwoArgError: left and right",
    "os_error": "FileNotFoundError: No such file or directory",
    "chained_no_message": "RuntimeError",
    "handler_timeout": "TimeoutError: Function exceeded maximum time of 2 seconds and was killed",
}


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def status_bytes(name: str) -> bytes:
    return fixture_bytes(f"{name}.status.json")


def status_dict(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(status_bytes(name))
    return data


def failed_status(exc_info: Any, **extra: Any) -> bytes:
    """A real failed status (value_error) with its exc_info replaced."""
    data = status_dict("value_error")
    data["exc_info"] = exc_info
    data.update(extra)
    return json.dumps(data).encode()


def exc_info_of(obj: Any, protocol: int = 4) -> str:
    """exc_info the way pywren writes it: str() of the pickle bytes."""
    return str(pickle.dumps(obj, protocol=protocol))


class FixtureError(Exception):
    """A non-builtin exception class for synthetic exc_info pickles."""


CALLED: list[str] = []


def record_call(arg: str) -> str:
    """Would run on unpickling; the parser must never call it."""
    CALLED.append(arg)
    return arg


class Hostile:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (record_call, ("pwned",))


# --- the real fixtures ------------------------------------------------------------------


def test_fixtures_are_what_pywren_wrote() -> None:
    """Guard the fixtures themselves: the shapes the tests rely on are there."""
    for name in EXPECTED_ERRORS:
        data = status_dict(name)
        assert data["exception"] is True
        assert data["type"] == "__end__"
        assert data["exc_info"].startswith(("b'\\x80\\x04", 'b"\\x80\\x04'))
        assert "logs" not in data
    assert status_dict("driver_class_error")["exc_pickle_fail"] is True
    assert status_dict("unpicklable_error")["exc_pickle_fail"] is True
    assert "exc_pickle_fail" not in status_dict("value_error")
    assert status_dict("returns_value")["result"] is True
    assert status_dict("returns_none")["result"] is False


def test_returned_value_points_at_output_object() -> None:
    data = status_dict("returns_value")
    status = parse_pywren_status(status_bytes("returns_value"), "00000")
    assert status.call_id == "00000"
    assert status.failed is False
    assert status.error is None
    assert status.traceback is None
    assert status.inline_result is None
    assert status.has_output_object is True
    assert status.worker_start == data["worker_start_tstamp"]
    assert isinstance(status.worker_start, float)


def test_returned_futures_fail_the_call_clearly() -> None:
    """pywren marks a call whose function returned futures ``new_futures: true`` and pickles
    the futures as its output: returned as the task's result, they would be a silent wrong
    result, so the call fails saying why."""
    data = {**status_dict("returns_value"), "new_futures": True}
    status = parse_pywren_status(json.dumps(data).encode(), "00000")
    assert status.failed is True and status.has_output_object is False
    assert status.error is not None and "returned pywren futures" in status.error
    assert status.worker_end == data["worker_end_tstamp"]


def test_returned_none_has_no_output_object() -> None:
    status = parse_pywren_status(status_bytes("returns_none"), "00001")
    assert status.failed is False
    assert status.error is None
    assert status.has_output_object is False
    assert status.inline_result is None
    assert status.worker_start == status_dict("returns_none")["worker_start_tstamp"]


@pytest.mark.parametrize("name", sorted(EXPECTED_ERRORS))
def test_failed_call_error_is_read_statically(name: str) -> None:
    status = parse_pywren_status(status_bytes(name), "00002")
    assert status.failed is True
    assert status.error == EXPECTED_ERRORS[name]
    assert status.traceback is None
    assert status.inline_result is None
    assert status.has_output_object is False
    assert status.worker_start == status_dict(name)["worker_start_tstamp"]


def test_parse_accepts_text() -> None:
    status = parse_pywren_status(status_bytes("value_error").decode(), "00002")
    assert status.error == "ValueError: boom on 3"


def test_parse_never_unpickles(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the parser unpickled")

    for attr in ("loads", "load", "Unpickler"):
        monkeypatch.setattr(pickle, attr, refuse)
    errors = {name: parse_pywren_status(status_bytes(name), "x").error for name in EXPECTED_ERRORS}
    assert errors == EXPECTED_ERRORS


def test_hostile_reducer_is_not_run() -> None:
    CALLED.clear()
    raw = failed_status(exc_info_of((ValueError, Hostile(), None)))
    status = parse_pywren_status(raw, "00002")
    assert CALLED == []
    # The walk sees record_call("pwned") only as a symbolic call; its first string shows.
    assert status.error == "ValueError: pwned"


# --- static summary of synthetic pickles -------------------------------------------------


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol(protocol: int) -> None:
    raw = failed_status(exc_info_of((ValueError, ValueError("proto boom"), None), protocol))
    assert parse_pywren_status(raw, "1").error == "ValueError: proto boom"


def test_protocol_zero_uses_global_opcode() -> None:
    pickled = pickle.dumps((FixtureError, FixtureError("old style"), None), protocol=0)
    assert "GLOBAL" in {op.name for op, _arg, _pos in pickletools.genops(pickled)}
    assert summarize_exc_info(pickled) == f"{FixtureError.__module__}.FixtureError: old style"


def test_non_builtin_class_shows_module() -> None:
    raw = failed_status(exc_info_of((FixtureError, FixtureError("mine"), None)))
    assert parse_pywren_status(raw, "1").error == f"{FixtureError.__module__}.FixtureError: mine"


def test_first_string_argument_is_the_message() -> None:
    raw = failed_status(exc_info_of((KeyError, KeyError(7, "seven"), None)))
    assert parse_pywren_status(raw, "1").error == "KeyError: seven"
    raw = failed_status(exc_info_of((KeyError, KeyError(7), None)))
    assert parse_pywren_status(raw, "1").error == "KeyError: 7"


def test_error_is_one_line_and_capped() -> None:
    raw = failed_status(exc_info_of((ValueError, ValueError("line one\nline two\n"), None)))
    assert parse_pywren_status(raw, "1").error == "ValueError: line one line two"
    raw = failed_status(exc_info_of((ValueError, ValueError("x" * 5000), None)))
    error = parse_pywren_status(raw, "1").error
    assert error is not None
    assert len(error) == MAX_ERROR_CHARS
    assert error.startswith("ValueError: xxx")


def test_exc_pickle_fail_dict_with_builtin_class() -> None:
    shape = {"exc_type": "<class 'ValueError'>", "exc_value": "from the dict", "exc_traceback": None}
    raw = failed_status(exc_info_of(shape), exc_pickle_fail=True)
    assert parse_pywren_status(raw, "1").error == "ValueError: from the dict"


def test_exc_pickle_fail_dict_without_a_class_repr() -> None:
    shape = {"exc_type": "SomethingOdd", "exc_value": "v"}
    raw = failed_status(exc_info_of(shape), exc_pickle_fail=True)
    assert parse_pywren_status(raw, "1").error == "SomethingOdd: v"


# --- malformed input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b'{"exception": true',
        b"[1, 2, 3]",
        b'"a string"',
        b"null",
        b"42",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"exception": "false"}',
        b'{"exception": 1}',
        b'{"exception": false, "result": "yes"}',
        b'{"exception": true, "exc_pickle_fail": "no"}',
    ],
)
def test_malformed_status_raises_status_parse_error(raw: bytes) -> None:
    with pytest.raises(StatusParseError):
        parse_pywren_status(raw, "00007")
    with pytest.raises(StatusParseError):
        pickled_exception(raw)


TRUNCATED = ast.literal_eval(status_dict("value_error")["exc_info"])[:200]


@pytest.mark.parametrize(
    "exc_info",
    [
        None,
        42,
        ["b'x'"],
        "not a literal",
        "'a str literal'",
        "__import__('os').system('true')",
        "b'x' + b'y'",
        "b'" + "\\x00" * (MAX_INLINE_RESULT_CHARS // 4 + 1) + "'",  # oversized
        str(b"not a pickle at all"),
        str(b""),
        str(TRUNCATED),
        str(b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f"),  # FRAME past the end
        str(b"\x80\x04h\x07."),  # memo get of nothing
        str(b"\x80\x04\x93."),  # STACK_GLOBAL on an empty stack
        str(b"\x80\x04K\x01K\x02\x93."),  # STACK_GLOBAL of ints
        str(b"\x80\x04t."),  # TUPLE without MARK
        str(b"\x80\x05\x97."),  # NEXT_BUFFER
        str(b"\x80\x04N."),  # a pickled None
        str(pickle.dumps((1, 2, 3))),  # a 3-tuple, not an exc_info
        str(pickle.dumps({"exc_value": "no type"})),
        str(pickle.dumps(["x"] * 10)),
    ],
)
def test_unreadable_exc_info_gives_the_generic_error(exc_info: Any) -> None:
    status = parse_pywren_status(failed_status(exc_info), "00008")
    assert status.failed is True
    assert status.error == GENERIC_ERROR
    assert status.has_output_object is False


def test_failed_without_exc_info_gives_the_generic_error() -> None:
    data = status_dict("value_error")
    del data["exc_info"]
    status = parse_pywren_status(json.dumps(data), "1")
    assert status.failed is True
    assert status.error == GENERIC_ERROR


def test_exc_info_pickle_size_cap() -> None:
    under = pickle.dumps((ValueError, ValueError("u" * (MAX_EXC_INFO_BYTES - 1000)), None))
    over = pickle.dumps((ValueError, ValueError("o" * MAX_EXC_INFO_BYTES), None))
    assert len(under) <= MAX_EXC_INFO_BYTES < len(over)
    error = parse_pywren_status(failed_status(str(under)), "1").error
    assert error is not None and error.startswith("ValueError: uuu")
    assert parse_pywren_status(failed_status(str(over)), "1").error == GENERIC_ERROR


def test_failed_without_exc_info_has_no_pickled_exception() -> None:
    data = status_dict("value_error")
    del data["exc_info"]
    assert pickled_exception(json.dumps(data)) is None


def test_huge_stack_is_not_an_exc_info() -> None:
    assert summarize_exc_info(b"\x80\x04" + b"]" * 200_000 + b".") is None


def test_non_string_args_give_just_the_class() -> None:
    raw = failed_status(exc_info_of((ValueError, ValueError(("nested",)), None)))
    assert parse_pywren_status(raw, "1").error == "ValueError"


def test_missing_or_odd_optional_fields() -> None:
    status = parse_pywren_status(b"{}", "3")
    assert (status.failed, status.error, status.has_output_object, status.worker_start) == (
        False,
        None,
        False,
        None,
    )
    status = parse_pywren_status(b'{"exception": false, "result": true, "worker_start_tstamp": true}', "3")
    assert status.has_output_object is True
    assert status.worker_start is None
    status = parse_pywren_status(b'{"exception": false, "worker_start_tstamp": 12}', "3")
    assert status.worker_start == 12.0


def test_random_garbage_never_escapes() -> None:
    import random

    rng = random.Random(1234)
    base = ast.literal_eval(status_dict("value_error")["exc_info"])
    for _ in range(400):
        mutated = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        status = parse_pywren_status(failed_status(str(bytes(mutated))), "9")
        assert status.failed is True
        assert isinstance(status.error, str)
        assert 0 < len(status.error) <= MAX_ERROR_CHARS


# --- pickled_exception ---------------------------------------------------------------------


def test_pickled_exception_returns_the_exc_info_bytes() -> None:
    for name in EXPECTED_ERRORS:
        pickled = pickled_exception(status_bytes(name))
        assert pickled == ast.literal_eval(status_dict(name)["exc_info"])
        assert pickled is not None and pickled.startswith(b"\x80\x04") and pickled.endswith(b".")


def test_pickled_exception_of_successful_calls_is_none() -> None:
    assert pickled_exception(status_bytes("returns_value")) is None
    assert pickled_exception(status_bytes("returns_none")) is None


def test_pickled_exception_of_a_bad_literal_raises() -> None:
    with pytest.raises(StatusParseError, match="exc_info"):
        pickled_exception(failed_status("__import__('os')"))
    with pytest.raises(StatusParseError, match="exc_info"):
        pickled_exception(failed_status("b'" + "a" * MAX_INLINE_RESULT_CHARS + "'"))


# --- decode_pywren_output ---------------------------------------------------------------------


def test_decode_real_output_pickle() -> None:
    assert decode_pywren_output(fixture_bytes("returns_value.output.pickle")) == {"answer": 42, "x": 0}


def test_decode_output_of_none_and_falsy_values() -> None:
    assert decode_pywren_output(pickle.dumps({"result": 0})) == 0
    assert decode_pywren_output(pickle.dumps({"result": None})) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not a pickle",
        fixture_bytes("returns_value.output.pickle")[:20],
        pickle.dumps([1, 2]),
        pickle.dumps({"results": 1}),
        pickle.dumps(None),
    ],
)
def test_decode_output_of_the_wrong_shape(raw: bytes) -> None:
    with pytest.raises(OutputDecodeError) as caught:
        decode_pywren_output(raw)
    assert isinstance(caught.value, ValueError)
    assert "output.pickle" in str(caught.value)


# --- format_pywren_traceback (worker side, unpickles) ---------------------------------------


def test_format_traceback_without_pywren_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pywren_ibm_cloud", None)
    monkeypatch.setitem(sys.modules, "pywren_ibm_cloud.libs.tblib", None)
    pickled = pickled_exception(status_bytes("value_error"))
    assert pickled is not None
    assert format_pywren_traceback(pickled) is None


def _traceback_of(name: str) -> str | None:
    pytest.importorskip("pywren_ibm_cloud")
    pickled = pickled_exception(status_bytes(name))
    assert pickled is not None
    return format_pywren_traceback(pickled)


def test_format_traceback_of_value_error() -> None:
    text = _traceback_of("value_error")
    assert text is not None
    assert text.startswith("Traceback (most recent call last):\n")
    assert "pywren_ibm_cloud/worker/jobrunner.py" in text
    assert "capture_pywren_status.py" in text and ", in work\n" in text
    assert text.endswith("ValueError: boom on 3\n")


def test_format_traceback_of_handler_error_drops_the_handler_marker() -> None:
    text = _traceback_of("handler_timeout")
    assert text is not None
    assert "pywren_ibm_cloud/worker/handler.py" in text
    assert text.endswith("TimeoutError: Function exceeded maximum time of 2 seconds and was killed\n")
    assert "HANDLER" not in text.splitlines()[-1]


def test_format_traceback_of_exc_pickle_fail() -> None:
    text = _traceback_of("driver_class_error")
    assert text is not None
    assert text.startswith("Traceback (most recent call last):\n")
    assert ", in work\n" in text
    assert text.endswith("__main__.DriverError: driver custom on 4\n")


def test_format_traceback_keeps_the_cause() -> None:
    text = _traceback_of("chained_no_message")
    assert text is not None
    assert "KeyError: 'inner'" in text
    assert "direct cause of the following exception" in text
    assert text.endswith("RuntimeError\n")


def test_format_traceback_of_unimportable_class_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pw_fixture_errors", None)  # the class's module is absent
    assert _traceback_of("module_class_error") is None


def test_format_traceback_of_garbage_is_none() -> None:
    pytest.importorskip("pywren_ibm_cloud")
    assert format_pywren_traceback(b"not a pickle") is None
    assert format_pywren_traceback(pickle.dumps((1, 2))) is None


def test_parsing_does_not_import_pywren() -> None:
    import subprocess

    code = (
        "import sys; from pathlib import Path\n"
        "from pywren_deferrable.call_status_pywren import parse_pywren_status, pickled_exception\n"
        f"for path in Path({str(FIXTURES)!r}).glob('*.status.json'):\n"
        "    parse_pywren_status(path.read_bytes(), '0'); pickled_exception(path.read_bytes())\n"
        "assert 'pywren_ibm_cloud' not in sys.modules, 'pywren imported'\n"
        "assert 'lithops' not in sys.modules, 'lithops imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_tblib3_exception_pickles_are_read() -> None:
    """tblib 3 (which Lithops installs process-wide) reduces exceptions through
    ``unpickle_exception_with_attrs``; the pickle is made in a fresh interpreter so that
    this test neither depends on nor leaks that global state."""
    pytest.importorskip("tblib")
    script = (
        "import pickle, sys, tblib.pickling_support as support; support.install()\n"
        "try:\n    raise ValueError('tblib three')\n"
        "except ValueError:\n    sys.stdout.buffer.write(pickle.dumps(sys.exc_info()))\n"
    )
    pickled = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True).stdout
    assert b"unpickle_exception_with_attrs" in pickled
    assert summarize_exc_info(pickled) == "ValueError: tblib three"
    assert parse_pywren_status(failed_status(str(pickled)), "7").error == "ValueError: tblib three"
