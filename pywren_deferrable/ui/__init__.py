"""The "Lithops job" tab: what a job's calls did, seen from the Airflow UI.

An Airflow plugin (:mod:`.plugin`, registered through the ``airflow.plugins`` entry
point) mounts a small FastAPI app (:mod:`.app`) on the api-server and adds a tab to the
task-instance page. The app finds the task's job(s) in the metadata DB (:mod:`.locate`),
reads their status objects through the task's Connection, incrementally and cached per
job (:mod:`.reader`), summarises them (:mod:`.calls`, :mod:`..pricing`) and renders a
plain page with SVG plots (:mod:`.render`). Nothing here runs in a task or a trigger.
"""
