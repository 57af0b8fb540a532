"""What a backend's invoker promises the dispatcher (:class:`Invoker`), and how it fails.

Each backend the trigger can invoke has a module of its own here (:mod:`.openwhisk`,
:mod:`.aws_lambda`, :mod:`.azure_functions`) with an invoker and the worker-side
``invoke_target`` that records, in the plan, where to invoke (no secret); :mod:`.backends`
lists them. The dispatcher sees only this interface.
"""

from __future__ import annotations

from typing import Any, Protocol


class DispatchError(Exception):
    """The trigger could not dispatch the job's remaining calls. Names no secret."""


class DispatchRefused(DispatchError):
    """The backend refused the invocation (bad key, missing function...): retrying won't help."""


class DispatchUnavailable(DispatchError):
    """The backend could not be reached or was overloaded, on every attempt: try again later."""


class Invoker(Protocol):
    """Invokes one job's function asynchronously, as Lithops' backend would.

    Built with the plan's ``target`` and the job's config with its secrets restored from
    the Connection; owns its connections until :meth:`close`.
    """

    async def invoke(self, payload: dict[str, Any]) -> str:
        """Invoke once (non-blocking); return the platform's id of the invocation.

        :raises DispatchRefused: retrying will not help.
        :raises DispatchUnavailable: throttled, server errors or unreachable after retries.
        """
        ...

    async def close(self) -> None: ...
