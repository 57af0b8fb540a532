"""Let a process reach the stand-in at the AWS host Lithops' ``aws_lambda`` backend invokes.

Lithops 3.8's ``AWSLambdaBackend.invoke`` (lithops/serverless/backends/aws_lambda/
aws_lambda.py:645-653) does not use its boto3 client: it signs a hand-built request to
``https://lambda.{region}.amazonaws.com/2015-03-31/functions/{name}/invocations`` (the host
fixed at aws_lambda.py:78) and sends it with a bare ``botocore.httpsession.URLLib3Session()``
(aws_lambda.py:77). That session reads no endpoint setting (``AWS_ENDPOINT_URL*`` are read
by botocore's client creation only), no proxy from the environment (``ProxyConfiguration``
gets ``proxies=None`` -> ``{}``, botocore/httpsession.py:235-242) and trusts only
``botocore.httpsession.where()`` (certifi's bundle, httpsession.py:103-110), not
``AWS_CA_BUNDLE``. So the one way to send that request to a local stand-in without
changing Lithops is what a hosts-file entry and a trusted CA do on a test machine:

* ``socket.getaddrinfo`` answers the stand-in's address and port for that host on port
  443 (urllib3 resolves through ``socket.getaddrinfo`` at connect time); TLS still checks
  the certificate against the AWS host name, which the stand-in's certificate carries;
* ``botocore.httpsession.where`` returns certifi's bundle plus the test CA.

Test code only, in the process that runs Lithops' invoker (the test process: ``dag.test()``
and the operators run in it; the benchmark's). The trigger needs none of it: it invokes
through aiobotocore, which reads ``AWS_ENDPOINT_URL_LAMBDA`` / ``AWS_CA_BUNDLE``, so a trigger
in a process of its own (test_faas_dispatch's kill -9 test) reaches the stand-in as it is.
A test that ran Lithops' invoker in a process it starts would call :func:`install` there.
"""

from __future__ import annotations

import socket
from typing import Any

_original_getaddrinfo = socket.getaddrinfo
_routes: dict[str, tuple[str, int]] = {}
_saved_where: Any = None


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    target = _routes.get(host) if isinstance(host, str) else None
    if target is not None and str(port) in ("443", "https", "None"):
        return _original_getaddrinfo(target[0], target[1], *args, **kwargs)
    return _original_getaddrinfo(host, port, *args, **kwargs)


def install(routes: dict[str, tuple[str, int]], ca_bundle: str) -> None:
    """Route ``routes`` (AWS host -> stand-in address) and trust ``ca_bundle`` for
    botocore's bare sessions, in this process."""
    global _saved_where
    import botocore.httpsession

    _routes.clear()
    _routes.update({host: (addr, int(port)) for host, (addr, port) in routes.items()})
    socket.getaddrinfo = _getaddrinfo
    if _saved_where is None:
        _saved_where = botocore.httpsession.where
    botocore.httpsession.where = lambda: ca_bundle


def uninstall() -> None:
    """Undo :func:`install`."""
    global _saved_where
    import botocore.httpsession

    _routes.clear()
    socket.getaddrinfo = _original_getaddrinfo
    if _saved_where is not None:
        botocore.httpsession.where = _saved_where
        _saved_where = None
