"""Background work run by the worker process (`python -m jobs.worker`): apply, drain, sweep, loads, polls.
Importing this package builds nothing: jobs/queue.py create_queue() makes the queue a process needs."""
