"""A local Apache OpenWhisk API (and IBM Cloud IAM) stand-in for Lithops' FaaS backends."""

from openwhisk_fake.server import Activation, FakeOpenWhisk

__all__ = ["Activation", "FakeOpenWhisk"]
