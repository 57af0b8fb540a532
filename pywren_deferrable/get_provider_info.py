"""Provider metadata, registered through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from pywren_deferrable.connection_form import provider_connection_fields, provider_field_behaviour


def get_provider_info() -> dict[str, Any]:
    """What Airflow's ProvidersManager reads: connection type, hooks, operators, triggers."""
    return {
        "package-name": "pywren-deferrable",
        "name": "PyWren (Lithops) deferrable operators",
        "description": "Deferrable operators that run map / map-reduce jobs on serverless functions "
        "with Lithops (IBM PyWren's successor), freeing the worker slot while they run.",
        "versions": ["0.1.0"],
        "connection-types": [
            {
                "connection-type": "lithops",
                "hook-class-name": "pywren_deferrable.hooks.lithops.LithopsHook",
                "hook-name": "Lithops (IBM PyWren)",
                "conn-fields": provider_connection_fields(),
                "ui-field-behaviour": provider_field_behaviour(),
            }
        ],
        "hooks": [{"integration-name": "Lithops", "python-modules": ["pywren_deferrable.hooks.lithops"]}],
        "operators": [
            {
                "integration-name": "Lithops",
                "python-modules": [
                    "pywren_deferrable.operators.call_async",
                    "pywren_deferrable.operators.map",
                    "pywren_deferrable.operators.map_reduce",
                ],
            }
        ],
        "extra-links": ["pywren_deferrable.links.PyWrenJobLink"],
        "task-decorators": [
            {"name": "pywren_map", "class-name": "pywren_deferrable.decorators.pywren_map_task"},
            {
                "name": "pywren_map_reduce",
                "class-name": "pywren_deferrable.decorators.pywren_map_reduce_task",
            },
            {
                "name": "pywren_call_async",
                "class-name": "pywren_deferrable.decorators.pywren_call_async_task",
            },
        ],
        "sensors": [{"integration-name": "Lithops", "python-modules": ["pywren_deferrable.sensors.job"]}],
        "triggers": [{"integration-name": "Lithops", "python-modules": ["pywren_deferrable.triggers.job"]}],
        "config": {
            "pywren_deferrable": {
                "description": "How the job trigger behaves in the triggerer.",
                "options": {
                    "heap_freezer": {
                        "description": "Keep long-lived triggers out of the garbage collector's "
                        "full collections (gc.freeze; docs/deferral.md): with thousands of job "
                        "triggers, full collections otherwise block the triggerer's loop for up "
                        "to a second. It acts on the whole triggerer process: turn it off to "
                        "leave CPython's collections as they are.",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                    "heap_thaw_interval": {
                        "description": "Seconds between two thaws of the frozen heap (unfreeze, "
                        "one full collection, freeze again): how long cyclic garbage of ended "
                        "triggers may wait to be freed.",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "600",
                        "default": "1800",
                    },
                },
            }
        },
        "integrations": [
            {
                "integration-name": "Lithops",
                "external-doc-url": "https://lithops-cloud.github.io/",
                "tags": ["software"],
            }
        ],
    }
