"""An Azure Functions stand-in: Azurite's queues and blobs, and a Functions host that runs
each queue message through Lithops' real azure_functions entry point (see :mod:`.host`)."""

from azure_functions_fake.host import FakeAzureFunctions, Invocation

__all__ = ["FakeAzureFunctions", "Invocation"]
