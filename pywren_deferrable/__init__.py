"""pywren-deferrable: deferrable Airflow operators for serverless jobs run by Lithops.

The public names are loaded lazily (PEP 562) so that importing a submodule, as the
detached Lithops runner and the triggerer do, does not pull in every operator.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "PyWrenCallAsyncOperator": "pywren_deferrable.operators.call_async",
    "PyWrenMapOperator": "pywren_deferrable.operators.map",
    "PyWrenMapReduceOperator": "pywren_deferrable.operators.map_reduce",
    "IbmPyWrenCallAsyncOperator": "pywren_deferrable.operators.call_async",
    "IbmPyWrenMapOperator": "pywren_deferrable.operators.map",
    "IbmPyWrenMapReduceOperator": "pywren_deferrable.operators.map_reduce",
    "PyWrenJobSensor": "pywren_deferrable.sensors.job",
    "PyWrenJobTrigger": "pywren_deferrable.triggers.job",
    "LithopsHook": "pywren_deferrable.hooks.lithops",
    "JobRef": "pywren_deferrable.job",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from pywren_deferrable.hooks.lithops import LithopsHook as LithopsHook
    from pywren_deferrable.job import JobRef as JobRef
    from pywren_deferrable.operators.call_async import (
        IbmPyWrenCallAsyncOperator as IbmPyWrenCallAsyncOperator,
    )
    from pywren_deferrable.operators.call_async import PyWrenCallAsyncOperator as PyWrenCallAsyncOperator
    from pywren_deferrable.operators.map import IbmPyWrenMapOperator as IbmPyWrenMapOperator
    from pywren_deferrable.operators.map import PyWrenMapOperator as PyWrenMapOperator
    from pywren_deferrable.operators.map_reduce import (
        IbmPyWrenMapReduceOperator as IbmPyWrenMapReduceOperator,
    )
    from pywren_deferrable.operators.map_reduce import PyWrenMapReduceOperator as PyWrenMapReduceOperator
    from pywren_deferrable.sensors.job import PyWrenJobSensor as PyWrenJobSensor
    from pywren_deferrable.triggers.job import PyWrenJobTrigger as PyWrenJobTrigger


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pywren_deferrable' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
