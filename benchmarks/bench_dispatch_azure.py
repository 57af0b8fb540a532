"""Row 7e alone (``--only dispatch-azure``): see :func:`benchmarks.bench_dispatch.run_azure_functions`."""

from __future__ import annotations

from benchmarks.bench_dispatch import run_azure_functions as run

__all__ = ["run"]
