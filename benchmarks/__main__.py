"""``python -m benchmarks [--quick] [--only NAME ...]``: run the benchmarks, print one table.

Every row compares this project with a baseline measured side by side in the same run
on the same endpoint. The table, with the machine's description, goes to stdout and to
``benchmarks/RESULTS.md`` (full runs) or ``benchmarks/RESULTS-quick.md`` (``--quick``
or ``--only``), unless ``--output`` says otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from benchmarks.common import BENCH_DIR, BenchResult, Context, loadavg, machine_info

BENCHMARKS = {
    "slots": "benchmarks.bench_slots",
    "requests": "benchmarks.bench_requests",
    "pollers": "benchmarks.bench_pollers",
    "latency": "benchmarks.bench_latency",
    "fetch": "benchmarks.bench_fetch",
    "e2e": "benchmarks.bench_e2e",
    "storages": "benchmarks.bench_storages",
    "jobview": "benchmarks.bench_jobview",
    "dispatch": "benchmarks.bench_dispatch",
    "scale": "benchmarks.bench_scale",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(results: list[BenchResult], info: dict[str, str], *, quick: bool, total: float) -> str:
    lines = [
        "# pywren-deferrable benchmarks" + (" (--quick)" if quick else ""),
        "",
        f"{info['date']} · {info['cores']} cores ({info['cpu']}) · Python {info['python']} · "
        f"Airflow {info['airflow']} · Lithops {info['lithops']} · aiobotocore {info['aiobotocore']} "
        f"(botocore {info['botocore']}) · moto {info['moto']} · aiohttp {info['aiohttp']}",
        "",
        f"Load average during the run: {info.get('load', '?')} (the machine is shared: other test "
        "suites ran at the same time, so wall times are noisy). Total run time: "
        f"{total:.0f} s.",
        "",
        "| # | measure | this project | baseline (same run, same endpoint) | ratio | goal | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        if result.error:
            lines.append(f"| {result.name} | failed: {_cell(result.error)} | | | | | ✗ |")
        for row in result.rows:
            ratio = "" if row.ratio is None else f"{row.ratio:.3g}x"
            met = "" if row.met is None else ("✓" if row.met else "✗")
            what = row.what + (f" — {row.note}" if row.note else "")
            lines.append(
                f"| {row.key} | {_cell(what)} | {_cell(row.project)} | {_cell(row.baseline)} | "
                f"{ratio} | {_cell(row.goal)} | {met} |"
            )
    lines.append("")
    lines.append("## Notes")
    lines.append("")
    for result in results:
        lines.append(f"* **{result.name}** ({result.seconds:.0f} s)")
        for note in result.notes:
            lines.append(f"  * {note}")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help="run only NAME (repeatable)",
    )
    parser.add_argument("--output", type=Path, help="where to write the table (markdown)")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    output = args.output or (
        BENCH_DIR / ("RESULTS.md" if not args.quick and not args.only else "RESULTS-quick.md")
    )

    started = time.monotonic()
    loads = [loadavg()]
    ctx = Context(quick=args.quick)
    results: list[BenchResult] = []
    try:
        for name in names:
            print(f"== {name} ...", file=sys.stderr, flush=True)
            module = importlib.import_module(BENCHMARKS[name])
            bench_start = time.monotonic()
            try:
                result = module.run(ctx)
            except Exception as err:
                traceback.print_exc()
                result = BenchResult(name, error=f"{type(err).__name__}: {err}")
            result.seconds = time.monotonic() - bench_start
            loads.append(loadavg())
            results.append(result)
            print(f"== {name}: {result.seconds:.0f} s", file=sys.stderr, flush=True)
    finally:
        ctx.close()
    info = machine_info()
    info["load"] = f"{min(loads):.1f}-{max(loads):.1f} (1-min, sampled between benchmarks)"
    text = render(results, info, quick=args.quick, total=time.monotonic() - started)
    print(text)
    output.write_text(text, encoding="utf-8")
    print(f"(written to {output})", file=sys.stderr)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
