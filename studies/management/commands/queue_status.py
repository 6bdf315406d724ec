"""`manage.py queue_status [--json] [--timeout S]`: queue depths and live Celery workers.

Depths are the broker's own message counts (`queue_declare(passive=True)`: waiting messages,
all priorities; Redis or RabbitMQ alike); workers answer Celery's broadcast `inspect`
(`active_queues`, `active`) within the timeout, so a worker that does not answer is not live.
Exit status 0 when the broker answers, 1 when it cannot be reached.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

QUEUES = ("interactive", "batch")


def queue_depths(app, queues: tuple[str, ...] = QUEUES) -> dict[str, int]:
    """Messages waiting in each queue (not counting the ones a worker holds unacknowledged)."""
    depths = {}
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
        channel = conn.default_channel
        for name in queues:
            try:
                depths[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except Exception as exc:  # RabbitMQ: NOT_FOUND for a queue no one declared yet
                if "NOT_FOUND" in str(exc) or "404" in str(exc):
                    depths[name] = 0
                    channel = conn.channel()
                else:
                    raise
    return depths


def live_workers(app, timeout: float) -> dict[str, dict]:
    """{worker name: {"queues": [...], "active": n}} for every worker that answered."""
    inspect = app.control.inspect(timeout=timeout)
    queues = inspect.active_queues() or {}
    active = inspect.active() or {}
    return {
        name: {
            "queues": sorted(q["name"] for q in queues.get(name, [])),
            "active": len(active.get(name, []) or []),
        }
        for name in sorted(set(queues) | set(active))
    }


def clicks_share_their_workers(workers: dict[str, dict]) -> bool:
    """True when `interactive` is served, but only by workers that consume other queues too:
    one long batch task then holds every click (issue 25)."""
    serving = [info["queues"] for info in workers.values() if "interactive" in info["queues"]]
    return bool(serving) and all(len(queues) > 1 for queues in serving)


class Command(BaseCommand):
    help = "Queue depths (interactive, batch) in the broker and the live Celery workers."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument(
            "--timeout", type=float, default=1.5, help="seconds to wait for workers to answer"
        )

    def handle(self, *args, **options):
        if settings.CELERY_TASK_ALWAYS_EAGER:
            raise CommandError(
                "CELERY_BROKER_URL is not set: Celery runs eagerly in-process, there are no queues or workers"
            )
        from config.celery_app import app

        try:
            depths = queue_depths(app)
        except Exception as exc:
            raise CommandError(
                f"the broker at {app.conf.broker_url!r} cannot be reached ({type(exc).__name__}: {exc})"
            ) from exc
        workers = live_workers(app, options["timeout"])
        serving = {
            q: sorted(w for w, info in workers.items() if q in info["queues"]) for q in QUEUES
        }
        shared = clicks_share_their_workers(workers)
        report = {"queues": depths, "workers": workers, "serving": serving, "clicks_shared": shared}
        if options["json"]:
            self.stdout.write(json.dumps(report))
            return
        self.stdout.write("queue        waiting  workers")
        for name in QUEUES:
            self.stdout.write(f"{name:<12} {depths[name]:>7}  {len(serving[name])}")
        if not workers:
            self.stdout.write(self.style.WARNING("no live worker answered"))
        for name, info in workers.items():
            self.stdout.write(
                f"worker {name}: queues {', '.join(info['queues']) or '-'}, {info['active']} task(s) running"
            )
        for name in QUEUES:
            if not serving[name]:
                self.stdout.write(self.style.WARNING(f"no live worker consumes queue {name}"))
        if shared:
            self.stdout.write(
                self.style.WARNING(
                    "every worker that serves interactive also serves other queues: a long batch "
                    "task holds the clicks; give interactive a worker of its own (-Q interactive)"
                )
            )
