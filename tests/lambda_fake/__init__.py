"""A local AWS Lambda stand-in (moto's control plane, invocations run for real) for
Lithops' ``aws_lambda`` compute backend."""

from lambda_fake.server import DEFAULT_REGION, FakeLambda, Invocation, prepare_account

__all__ = ["DEFAULT_REGION", "FakeLambda", "Invocation", "prepare_account"]
