"""Payload functions for the example DAGs.

They live in their own module, which imports no Airflow: Lithops pickles a function
defined in an Airflow-importing module by reference, and the serverless worker would
then import Airflow (and fail on the Task SDK's blocked metadata DB URL).
"""
