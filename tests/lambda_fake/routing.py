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

Test code only: the test process calls :func:`install`; processes the tests start get it
from ``site/sitecustomize.py`` on their ``PYTHONPATH`` (see :func:`subprocess_env`).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

ROUTES_ENV = "LAMBDA_FAKE_ROUTES"  # {"lambda.us-east-1.amazonaws.com": ["127.0.0.1", port]}
CA_ENV = "LAMBDA_FAKE_CA_BUNDLE"  # certifi's bundle + the test CA
SITE_DIR = str(Path(__file__).with_name("site"))

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


def install_from_env() -> None:
    """What ``sitecustomize`` runs in a process the tests started."""
    raw = os.environ.get(ROUTES_ENV)
    if raw and os.environ.get(CA_ENV):
        install({h: (a, p) for h, (a, p) in json.loads(raw).items()}, os.environ[CA_ENV])


def subprocess_env(routes: dict[str, tuple[str, int]], ca_bundle: str) -> dict[str, str]:
    """The environment variables that give a child process the same routing."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        ROUTES_ENV: json.dumps(routes),
        CA_ENV: ca_bundle,
        "PYTHONPATH": os.pathsep.join(p for p in (SITE_DIR, path) if p),
    }
