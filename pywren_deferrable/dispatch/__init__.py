"""FaaS dispatch: the calls beyond ``max_workers`` are invoked by the trigger, not the worker.

Lithops' FaaS invoker sends the first ``max_workers`` chunks of a job at once and feeds
the rest from an in-process queue as its local monitor sees calls finish: a task that
waited for that queue held its worker slot for most of a large job. Instead:

1. :mod:`.capture` (worker, Lithops loaded): submit as usual, but record the chunks Lithops
   would have queued, and the exact payload its invoker builds for each, instead of
   queueing them; wait only for the first wave to be accepted.
2. :mod:`.plan`: those chunks, the invoke target and the payload, with every secret leaf
   removed, stored as one object under the job's own prefix (cleaned with the job).
3. :mod:`.dispatcher` (trigger, no Lithops): as the poll sees calls finish, invoke the next
   chunks through the backend's API (:mod:`.backends`: :mod:`.openwhisk` for openwhisk and
   ibm_cf, :mod:`.aws_lambda`; the interface in :mod:`.errors`), never more than
   ``max_workers`` running, with the secrets read from the Connection, and advance a cursor
   stored with the job only once the backend accepted a batch.

:mod:`.audit` (worker) records what the platform answered to every invocation Lithops
made, so that a task defers only once each call is accepted or in a plan.
"""
