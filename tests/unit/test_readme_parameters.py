"""The README's parameter table lists exactly the operators' parameters."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from pywren_deferrable import PyWrenCallAsyncOperator, PyWrenMapOperator, PyWrenMapReduceOperator
from pywren_deferrable.operators.base import PyWrenBaseOperator

README = Path(__file__).resolve().parents[2] / "README.md"


def documented(heading: str = "### Parameters") -> set[str]:
    text = README.read_text()
    table = text[text.index(heading) :]
    table = table[: table.index("\n\n", table.index("| --- |"))]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        names.update(re.findall(r"`([a-z_]+)`", row.split("|")[1]))
    return names


def own_parameters(cls: type) -> set[str]:
    names = set()
    for klass in cls.__mro__:
        if klass is PyWrenBaseOperator or (isinstance(klass, type) and issubclass(klass, PyWrenBaseOperator)):
            names |= {
                p.name
                for p in inspect.signature(klass.__init__).parameters.values()
                if p.kind is p.KEYWORD_ONLY
            }
    return names


def test_readme_table_matches_the_operators() -> None:
    code = set().union(
        *(own_parameters(c) for c in (PyWrenCallAsyncOperator, PyWrenMapOperator, PyWrenMapReduceOperator))
    )
    assert documented() == code


def test_readme_sensor_table_matches_the_sensor() -> None:
    from pywren_deferrable import PyWrenJobSensor

    own = {
        p.name
        for p in inspect.signature(PyWrenJobSensor.__init__).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    }
    assert documented("### PyWrenJobSensor parameters") == own
