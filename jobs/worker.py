"""`python -m jobs.worker` (Procfile `worker:`; gunicorn.conf.py starts it on Render's free plan): only the
entry point. The process itself is jobs/consumer.py, so that the module `-m` runs as __main__ holds no
state that a second copy, imported as jobs.worker, could hold instead."""
from jobs.consumer import main

if __name__ == "__main__":
    main()
