"""Payload functions for the tests. No Airflow imports here, on purpose (see the
example DAGs' pywren_functions package for why)."""
