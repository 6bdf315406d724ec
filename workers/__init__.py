"""Celery tasks: read rows, call `interventions`, write results. Models stay loaded per process."""
