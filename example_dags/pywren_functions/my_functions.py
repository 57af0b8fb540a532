"""The seed README's example functions (no Airflow imports here, on purpose)."""

from __future__ import annotations


def add(x, y):
    """The seed's map function: ``add(x, y) = x + y``."""
    return x + y


def mult_array(results):
    """The seed's map-reduce reducer, as its code really is.

    The README claims 18 for ``[1, 2, 3]`` mapped with ``add(y=1)``, but the loop
    multiplies by 2 once per result (it ignores ``n``), so it returns ``2 ** len(results)``:
    8 for three results.
    """
    result = 1
    for _n in results:
        result *= 2
    return result
