"""The parity suite: Lithops' own tests (``lithops/tests/test_map.py``,
``test_call_async.py``, ``test_map_reduce.py`` of the installed Lithops 3.8), each restated
as a task of this provider, asserting what the Lithops test asserts.

The payload functions are Lithops' own (``lithops.tests.functions``, installed with
Lithops). Lithops' data set comes from the internet; here the same kind of files (word
lists, one word per line) are generated, uploaded to the embedded S3 endpoint, and served
for the URL cases by a local HTTP server.
"""
