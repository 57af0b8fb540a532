"""Mapping cloudpickle's ``<dynamic-code>`` frames back to the DAG file."""

from __future__ import annotations

from pywren_deferrable.tracebacks import CodeSpan, code_index, restore_filenames


def outer(x):
    def inner(y):
        return 1 / y

    return inner(x)


def test_index_covers_nested_code() -> None:
    index = code_index([outer])
    first = outer.__code__.co_firstlineno
    assert index["outer"] == [CodeSpan(__file__, first, first + 4)]
    assert index["inner"] == [CodeSpan(__file__, first + 1, first + 2)]


def test_frames_of_known_functions_are_restored_with_their_source() -> None:
    first = outer.__code__.co_firstlineno
    remote = (
        "Traceback (most recent call last):\n"
        '  File "/lithops/worker/jobrunner.py", line 300, in run\n'
        "    result = function(**data)\n"
        f'  File "<dynamic-code>", line {first + 4}, in outer\n'
        f'  File "<dynamic-code>", line {first + 2}, in inner\n'
        '  File "<dynamic-code>", line 7, in unknown\n'
        f'  File "<dynamic-code>", line {first + 40}, in outer\n'
        "ZeroDivisionError: division by zero"
    )
    restored = restore_filenames(remote, code_index([outer]))
    assert restored.splitlines() == [
        "Traceback (most recent call last):",
        '  File "/lithops/worker/jobrunner.py", line 300, in run',
        "    result = function(**data)",
        f'  File "{__file__}", line {first + 4}, in outer',
        "    return inner(x)",
        f'  File "{__file__}", line {first + 2}, in inner',
        "    return 1 / y",
        '  File "<dynamic-code>", line 7, in unknown',  # no such function: left alone
        f'  File "<dynamic-code>", line {first + 40}, in outer',  # not inside outer: left alone
        "ZeroDivisionError: division by zero",
    ]


def test_ambiguous_names_are_left_alone() -> None:
    spans = {"f": [CodeSpan("/a.py", 1, 10), CodeSpan("/b.py", 5, 20)]}
    text = '  File "<dynamic-code>", line 7, in f'
    assert restore_filenames(text, spans) == text
    assert restore_filenames('  File "<dynamic-code>", line 15, in f', spans).startswith(
        '  File "/b.py", line 15'
    )
