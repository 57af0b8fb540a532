"""What :mod:`pywren_deferrable.dispatch.azure_functions` takes from Lithops' azure_functions
backend (pinned < 3.9): the queue it invokes through, the name of that queue, the message
encoding. If one of these fails, the trigger would send messages nobody reads."""

from __future__ import annotations

import datetime
import inspect

from lithops.serverless.backends.azure_functions import config as az_config
from lithops.serverless.backends.azure_functions.azure_functions import AzureFunctionAppBackend
from lithops.utils import b64str_to_dict, dict_to_b64str

from pywren_deferrable.dispatch import azure_functions


def test_only_the_queue_trigger_is_dispatched_by_the_trigger():
    assert azure_functions.why_not({"azure_functions": {"trigger": "pub/sub"}}) is None
    assert azure_functions.why_not({"azure_functions": {}}) is None  # Lithops' default
    reason = azure_functions.why_not({"azure_functions": {"trigger": "https"}})
    assert reason is not None and "'https'" in reason


def test_the_message_is_lithops_encoding():
    payload = {"call_ids": ["00001"], "when": datetime.date(2024, 1, 2), "data": {"x": [1, 2]}}
    assert azure_functions.message_content(payload) == dict_to_b64str(payload)
    assert b64str_to_dict(azure_functions.message_content(payload))["when"] == "2024-01-02"


def test_lithops_invokes_through_the_input_queue_named_as_the_target_names_it():
    assert az_config.IN_QUEUE == azure_functions.IN_QUEUE
    assert az_config.DEFAULT_CONFIG_KEYS["trigger"] == "pub/sub"
    invoke = inspect.getsource(AzureFunctionAppBackend.invoke)
    assert "self._format_queue_name(function_name, config.IN_QUEUE)" in invoke
    assert "send_message(utils.dict_to_b64str(payload))" in invoke
    assert "activation_id = msg.id" in invoke
    assert "https://{self.storage_account_name}.queue.core.windows.net" in inspect.getsource(
        AzureFunctionAppBackend.__init__
    )
    # load_config copies the azure_storage section (the account key) into azure_functions.
    assert "config_data['azure_functions'].update(config_data['azure_storage'])" in inspect.getsource(
        az_config.load_config
    )


def test_the_target_holds_no_key():
    class Backend:
        queue_service_url = "https://acct.queue.core.windows.net"
        storage_account_name = "acct"
        storage_account_key = "c2VjcmV0LWtleQ=="
        _format_function_name = AzureFunctionAppBackend._format_function_name
        _get_function_identity = AzureFunctionAppBackend._get_function_identity
        _format_queue_name = AzureFunctionAppBackend._format_queue_name
        trigger = "pub/sub"

    target = azure_functions.invoke_target(
        Backend(), "azure_functions", {"runtime_name": "default-runtime-v311"}, {}
    )
    assert target["queue"].startswith("lithops-worker-") and target["queue"].endswith("-in-trigger")
    assert target["auth"] == {"kind": "shared_key", "config_path": ["azure_functions", "storage_account_key"]}
    assert Backend.storage_account_key not in repr(target)
