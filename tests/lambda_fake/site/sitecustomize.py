"""Test-only: route the AWS Lambda host to the local stand-in in processes the tests start
(see tests/lambda_fake/routing.py for why). Does nothing without its environment."""

import os
import sys

if os.environ.get("LAMBDA_FAKE_ROUTES"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from lambda_fake.routing import install_from_env

    install_from_env()
