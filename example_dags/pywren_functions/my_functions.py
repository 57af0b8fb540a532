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


def count_words(obj):
    """Word count of one storage object (or one chunk of it): ``{word: count}``.

    Lithops passes ``obj`` (a storage object, or a chunk of one with ``chunk_size`` /
    ``chunk_n``, cut at newlines so that no word is split).
    """
    counts = {}
    for word in obj.data_stream.read().decode("utf-8").split():
        counts[word] = counts.get(word, 0) + 1
    return counts


def merge_counts(results):
    """Reducer: add up the ``{word: count}`` dicts of the map calls."""
    total = {}
    for counts in results:
        for word, count in counts.items():
            total[word] = total.get(word, 0) + count
    return dict(sorted(total.items()))
