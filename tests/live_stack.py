"""A real Intervene stack for integration tests and benchmarks: PostgreSQL, Redis, gunicorn and
Celery workers as separate processes on 127.0.0.1, started and stopped by the caller.

`LiveStack` creates a fresh PostgreSQL database (`intervene_it_<random>`, dropped afterwards),
takes an empty Redis database number on the shared server (or a private `redis-server` it
starts itself), runs `manage.py migrate` and seeds one prompting study (or, with
`kind="intervention"`, an intervention study on a demo CNN with random weights) in a subprocess
with `DATABASE_URL` / `CELERY_BROKER_URL` in the environment, starts gunicorn on a free port and one
`celery -A config worker --pool prefork --concurrency 1` per queue, waits until `/healthz` is
green and every worker says `ready`, and stops every process group at the end, also on failure::

    with LiveStack(participants=4) as stack:
        annotator = stack.annotator(0)
        annotator.event(...)

Run as a script (`python tests/live_stack.py seed|embed JSON`) it is the seeding / embedding
step the stack executes inside the stack's environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PG_ADMIN_DSN = os.environ.get(
    "INTERVENE_IT_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test"
)
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


class StackError(RuntimeError):
    """The stack could not be started or a process misbehaved (the message says which)."""


# ---------------------------------------------------------------- service probes


def redis_ping(
    host: str = REDIS_HOST, port: int = REDIS_PORT, db: int = 0, timeout: float = 2.0
) -> bool:
    import redis

    try:
        return bool(
            redis.Redis(
                host=host, port=port, db=db, socket_timeout=timeout, socket_connect_timeout=timeout
            ).ping()
        )
    except Exception:
        return False


def services_missing() -> str | None:
    """Why the real services are not usable here, or None when PostgreSQL and Redis answer."""
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL is not reachable at {PG_ADMIN_DSN!r} ({type(exc).__name__}: {exc})"
    if not redis_ping():
        return f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}"
    return None


def pytest_on_own_postgresql(test_file: str, prefix: str, timeout: float = 300):
    """Run one test file with pytest against a PostgreSQL database of its own (pytest-django
    makes and drops test_<name>; the name itself is never used): the finished process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{prefix}_{uuid.uuid4().hex[:8]}"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- processes


@dataclass
class Proc:
    """One child process in its own process group, with its output in a log file."""

    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, chars: int = 3000) -> str:
        return self.text()[-chars:]

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after `timeout` seconds."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # stragglers (pool children) of the group
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a crash, not a shutdown)."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(10)


def spawn(name: str, argv: list[str], env: dict, log_dir: Path) -> Proc:
    log = log_dir / f"{name}.log"
    handle = open(log, "ab")
    popen = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    handle.close()
    return Proc(name, popen, log)


# ---------------------------------------------------------------- the HTTP client of one annotator


@dataclass
class Annotator:
    """One participant talking to the live API with its Bearer token (requests.Session)."""

    base_url: str
    token: str
    assignments: list[int]
    width: int = 0
    height: int = 0
    seq: dict[int, int] = field(default_factory=dict)
    timeout: float = 60.0

    def __post_init__(self) -> None:
        import requests

        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def get(self, path: str):
        return self.http.get(f"{self.base_url}/api/v1/{path}", timeout=self.timeout)

    def post(self, path: str, body: dict):
        return self.http.post(f"{self.base_url}/api/v1/{path}", json=body, timeout=self.timeout)

    def body(
        self,
        assignment: int,
        action: str,
        mode: str = "",
        x: float | None = None,
        y: float | None = None,
        cid: str | None = None,
    ) -> dict:
        body = {
            "client_event_id": cid or uuid.uuid4().hex,
            "seq": self.seq.get(assignment, 0),
            "action": action,
            "client_ts": time.time() * 1000.0,
        }
        if mode:
            body["mode"] = mode
        if x is not None:
            body.update(x=x, y=y)
        return body

    def send(self, assignment: int, body: dict):
        """POST one event body; on 200 the next seq is taken."""
        response = self.post(f"assignments/{assignment}/events", body)
        if response.status_code == 200:
            self.seq[assignment] = body["seq"] + 1
        return response


# ---------------------------------------------------------------- the stack


class LiveStack:
    """PostgreSQL database + Redis + gunicorn + Celery workers for one test or benchmark."""

    def __init__(
        self,
        *,
        participants: int = 2,
        images: int = 2,
        kind: str = "prompting",
        status: str = "open",
        backend: str = "classical",
        sam_checkpoint: str | None = None,
        protocol: dict | None = None,
        queues: tuple[str, ...] = ("interactive", "batch"),
        web_workers: int = 2,
        web_threads: int = 1,
        private_redis: bool = False,
        interactive_timeout_s: float = 20.0,
        worker_env: dict | None = None,
        worker_threads: int = 1,
        interactive_pool: tuple[str, int] = ("prefork", 1),
        env: dict | None = None,
        consented: bool = False,
        embed: bool = False,
        startup_timeout_s: float = 120.0,
        design: dict | None = None,
    ) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="intervene-stack-"))
        self.seed_args = {
            "participants": participants,
            "images": images,
            "kind": kind,  # "prompting" (on `backend`) or "intervention" (a classifier)
            "status": status,  # "draft": the test opens it, as a researcher does
            "weights_dir": str(self.tmp / "weights"),  # an intervention's random demo weights
            "backend": backend,
            "sam_checkpoint": sam_checkpoint,
            "protocol": protocol or {},
            "consented": consented,
            "design": design or {},  # an experimental design (studies/core/design.py)
        }
        self.queues = queues
        self.web_workers = web_workers
        self.web_threads = web_threads
        self.private_redis = private_redis
        self.interactive_timeout_s = interactive_timeout_s
        # One intra-op torch/OpenMP thread per worker process: on a small shared machine two
        # threads per process oversubscribe the cores (measured 2-4x slower SAM clicks).
        self.worker_env = {"OMP_NUM_THREADS": str(worker_threads), **(worker_env or {})}
        self.extra_env = env or {}
        self.interactive_pool = interactive_pool  # (Celery pool, concurrency) of `interactive`
        self.embed = embed
        self.startup_timeout_s = startup_timeout_s
        self.procs: list[Proc] = []
        self.workers: dict[str, Proc] = {}
        self.worker_queues: dict[str, list[str]] = {}
        self.web: Proc | None = None
        self.redis: Proc | None = None
        self.db_name = ""
        self.redis_db = 0
        self.redis_port = REDIS_PORT
        self.study: dict = {}
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.port = 0
        self.healthz_token = secrets.token_hex(8)  # /healthz details need it (issue 23)

    # -- lifecycle

    def __enter__(self) -> LiveStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        import psycopg

        self.db_name = f"intervene_it_{secrets.token_hex(5)}"
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        if self.private_redis:
            self.start_redis()
        else:
            self.redis_db = self._empty_redis_db()
        self.env = self._environment()
        self.manage("migrate", "--noinput", timeout=180)
        out = self.script("seed", self.seed_args, timeout=180)
        self.study = json.loads(out.strip().splitlines()[-1])
        self.start_web()
        for queue in self.queues:
            self.start_worker(queue)
        self.wait_healthy()
        for proc in self.workers.values():
            self.wait_ready(proc)
        if self.embed:
            self.script("embed", {"study": self.study["id"]}, timeout=600)

    def stop(self) -> None:
        """Stop every process (workers first), drop the database and free the Redis db."""
        for proc in reversed(self.procs):
            if proc is not self.redis:
                proc.stop()
        if not self.private_redis and self.redis_db:
            try:
                import redis

                redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=self.redis_db).flushdb()
            except Exception:
                pass
        if self.redis is not None:
            self.redis.stop()
        if self.db_name:
            import psycopg

            try:
                with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            except Exception as exc:  # report, never hide the test's own failure
                print(f"live_stack: could not drop database {self.db_name}: {exc}", file=sys.stderr)
            self.db_name = ""
        if os.environ.get("INTERVENE_KEEP_STACK_LOGS"):
            print(f"live_stack: logs kept in {self.logs}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- environment and commands

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/{self.redis_db}"

    @property
    def database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:5432/{self.db_name}"

    def _environment(self) -> dict:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "CELERY_", "PYTEST"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DJANGO_DEBUG="0",
            DATABASE_URL=self.database_url,
            CELERY_BROKER_URL=self.broker_url,
            CELERY_RESULT_BACKEND=self.broker_url,
            CACHE_URL=self.broker_url,  # shared by the web processes, as in production
            HEALTHZ_TOKEN=self.healthz_token,
            MEDIA_ROOT=str(self.tmp / "media"),
            EMBEDDING_CACHE_DIR=str(self.tmp / "embeddings"),
            INTERACTIVE_TIMEOUT_S=str(self.interactive_timeout_s),
            DB_CONN_MAX_AGE="60",  # persistent, health-checked connections, as in production
            PYTHONUNBUFFERED="1",
            LOG_LEVEL="WARNING",
        )
        env.update(self.extra_env)
        return env

    def manage(self, *args: str, timeout: float = 120, env: dict | None = None) -> str:
        return self._run([str(VENV_BIN / "python"), "manage.py", *args], timeout, env)

    def script(self, command: str, args: dict, timeout: float = 120) -> str:
        return self._run(
            [str(VENV_BIN / "python"), str(Path(__file__)), command, json.dumps(args)], timeout
        )

    def _run(self, argv: list[str], timeout: float, env: dict | None = None) -> str:
        try:
            done = subprocess.run(
                argv, cwd=ROOT, env=env or self.env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"{' '.join(argv[1:3])} did not finish within {timeout} s") from exc
        if done.returncode != 0:
            raise StackError(
                f"{' '.join(argv[1:3])} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
        return done.stdout

    def _empty_redis_db(self) -> int:
        """A Redis database number no one uses right now (dbsize 0), 8..15 first."""
        import redis

        for db in [*range(8, 16), *range(1, 8)]:
            client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=3)
            if client.dbsize() == 0:
                client.set("intervene:live_stack:claimed", os.getpid(), ex=24 * 3600)
                return db
        raise StackError("no empty Redis database number (1..15) on 127.0.0.1:6379")

    # -- processes

    def start_redis(self) -> Proc:
        """A private redis-server (no persistence) on a free port; for tests that stop Redis."""
        if self.redis is None or not self.redis_port or self.redis_port == REDIS_PORT:
            self.redis_port = free_port()
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [
            binary,
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.tmp),
        ]
        self.redis = spawn("redis", argv, os.environ.copy(), self.logs)
        self.procs.append(self.redis)
        deadline = time.monotonic() + 20
        while not redis_ping(port=self.redis_port, timeout=0.5):
            if not self.redis.alive() or time.monotonic() > deadline:
                raise StackError(
                    f"redis-server did not start on port {self.redis_port}:\n{self.redis.tail()}"
                )
            time.sleep(0.1)
        return self.redis

    def stop_redis(self) -> None:
        """Stop the private redis-server (SIGKILL: a crash); start it again with start_redis()."""
        if self.redis is None:
            raise StackError("stop_redis needs LiveStack(private_redis=True)")
        self.redis.kill()
        self.procs.remove(self.redis)

    def start_web(self) -> Proc:
        self.port = free_port()
        argv = [
            str(VENV_BIN / "gunicorn"), "config.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.web_workers),
            "--threads", str(self.web_threads),
            "--timeout", str(int(self.interactive_timeout_s * 3 + 30)),
            "--graceful-timeout", "5",
        ]  # fmt: skip
        self.web = spawn("gunicorn", argv, self.env, self.logs)
        self.procs.append(self.web)
        return self.web

    def start_worker(self, queue: str, name: str | None = None, env: dict | None = None) -> Proc:
        """`celery -A config worker -Q <queue> --pool prefork --concurrency 1` (not yet ready);
        the `interactive` queue's pool and concurrency are `interactive_pool`. `queue` may name
        several queues, comma-separated (`"interactive,batch"`: one worker serving both)."""
        name = name or f"{queue.replace(',', '+')}-{secrets.token_hex(3)}"
        pool, concurrency = self.interactive_pool if queue == "interactive" else ("prefork", 1)
        argv = [
            str(VENV_BIN / "celery"), "-A", "config", "worker",
            "-Q", queue, "--pool", pool, "--concurrency", str(concurrency),
            "-n", f"{name}@%h", "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        proc = spawn(name, argv, {**self.env, **self.worker_env, **(env or {})}, self.logs)
        self.procs.append(proc)
        self.workers[name] = proc
        self.worker_queues[name] = queue.split(",")
        return proc

    def worker(self, queue: str) -> Proc:
        """A live worker that consumes `queue` (alone or with other queues)."""
        for name, proc in self.workers.items():
            if queue in self.worker_queues.get(name, ()) and proc.alive():
                return proc
        raise StackError(f"no live worker for queue {queue}")

    def wait_ready(self, proc: Proc, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.startup_timeout_s)
        while " ready." not in proc.text():
            if not proc.alive():
                raise StackError(
                    f"worker {proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}"
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"worker {proc.name} not ready after {timeout or self.startup_timeout_s} s:\n{proc.tail()}"
                )
            time.sleep(0.1)

    @property
    def healthz_headers(self) -> dict:
        return {"X-Healthz-Token": self.healthz_token}

    def wait_healthy(self, timeout: float | None = None) -> dict:
        import requests

        deadline = time.monotonic() + (timeout or self.startup_timeout_s)
        last = "no answer"
        while True:
            if self.web is not None and not self.web.alive():
                raise StackError(
                    f"gunicorn exited ({self.web.popen.returncode}):\n{self.web.tail()}"
                )
            try:
                response = requests.get(
                    f"{self.base_url}/healthz", headers=self.healthz_headers, timeout=5
                )
                if response.status_code == 200:
                    return response.json()
                last = f"{response.status_code} {response.text[:300]}"
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}"
            if time.monotonic() > deadline:
                raise StackError(
                    f"/healthz not green after {timeout or self.startup_timeout_s} s: {last}"
                )
            time.sleep(0.2)

    def pool_children(self, proc: Proc) -> list[int]:
        """The prefork pool processes of a worker (the ones that run tasks)."""
        import psutil

        try:
            return [child.pid for child in psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    # -- the database of the stack

    def sql(self, query: str, params: tuple | None = None) -> list[tuple]:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port=5432 user=postgres dbname={self.db_name}", connect_timeout=5
        ) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def terminate_connections(self) -> int:
        """pg_terminate_backend on every other connection to the stack's database."""
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.db_name,),
            ).fetchall()
        return len(rows)

    def audit(self) -> dict:
        """Exactly-once check over the stored events: per assignment, seq is 0..n-1, timesteps are
        0..T-1 in seq order, client_event_ids are unique and next_seq matches; returns counts."""
        rows = self.sql(
            "SELECT assignment_id, seq, timestep, client_event_id FROM studies_promptevent ORDER BY assignment_id, seq"
        )
        next_seq = dict(self.sql("SELECT id, next_seq FROM studies_assignment"))
        problems: list[str] = []
        by_assignment: dict[int, list[tuple]] = {}
        for row in rows:
            by_assignment.setdefault(row[0], []).append(row)
        for aid, events in by_assignment.items():
            seqs = [e[1] for e in events]
            if seqs != list(range(len(seqs))):
                problems.append(f"assignment {aid}: seq {seqs[:20]} is not 0..{len(seqs) - 1}")
            steps = [e[2] for e in events if e[2] is not None]
            if steps != list(range(len(steps))):
                problems.append(
                    f"assignment {aid}: timesteps {steps[:20]} are not 0..{len(steps) - 1} in order"
                )
            cids = [e[3] for e in events]
            if len(set(cids)) != len(cids):
                problems.append(f"assignment {aid}: duplicated client_event_id")
            if next_seq.get(aid) != len(seqs):
                problems.append(
                    f"assignment {aid}: next_seq {next_seq.get(aid)} != {len(seqs)} events"
                )
        return {
            "events": len(rows),
            "timesteps": sum(1 for r in rows if r[2] is not None),
            "assignments": len(by_assignment),
            "client_event_ids": {r[3] for r in rows},
            "problems": problems,
        }

    # -- participants

    def annotator(self, index: int) -> Annotator:
        p = self.study["participants"][index]
        return Annotator(self.base_url, p["token"], p["assignments"], p["width"], p["height"])


def random_sam_vit_b_checkpoint(path: str | os.PathLike[str], seed: int = 0) -> str:
    """A randomly initialised vit_b SAM (seeded) saved as a checkpoint; reused when present.

    Same architecture, hence the same compute cost, as the released sam_vit_b_01ec64.pth."""
    path = Path(path)
    if path.is_file():
        return str(path)
    import torch
    from segment_anything import build_sam_vit_b

    torch.manual_seed(seed)
    sam = build_sam_vit_b(checkpoint=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(sam.state_dict(), tmp)
    os.replace(tmp, path)
    return str(path)


# ---------------------------------------------------------------- steps run inside the stack's environment


def _seed(args: dict) -> dict:
    """One prompting study on generated scenes (or an intervention study on a demo CNN with
    random weights, `classifier_spec` of tests/intervention_fixtures.py), open unless
    args["status"] says otherwise, with its participants; prints its JSON."""
    from django.utils import timezone

    from interventions.demo_data import generate_scene
    from studies.core.datasets import create_dataset
    from studies.core.demo import file_sha256
    from studies.core.design import model_kinds_by_id, validate_design
    from studies.core.enrolment import enrol_participant
    from studies.core.kinds import get_kind
    from studies.models import ModelSpec, Study
    from tests.factories import researcher

    name = "Clean shapes"
    scenes = [generate_scene(name, i, seed=0) for i in range(args["images"])]
    dataset = create_dataset(
        name, [(s.image, s.mask, s.label, s.class_name) for s in scenes], source="generated", seed=0
    )
    kind = args["kind"]
    extra = {}
    if kind == "intervention":
        from tests.intervention_fixtures import classifier_spec, random_demo_weights

        weights = Path(args["weights_dir"])
        weights.mkdir(parents=True, exist_ok=True)
        spec = classifier_spec(random_demo_weights(weights))
        extra["survey_question"] = get_kind(kind).survey_question
    elif args["backend"] == "sam":
        checkpoint = args["sam_checkpoint"]
        spec = ModelSpec.objects.create(
            name="SAM vit_b (random init)",
            kind="sam",
            architecture="vit_b",
            weights_path=checkpoint,
            weights_sha256=file_sha256(checkpoint),
        )
    else:
        spec = ModelSpec.objects.create(
            name="classical", kind="classical", architecture="classical-v1"
        )
    study = Study.objects.create(
        kind=kind,
        title=f"live stack ({args['backend'] if kind == 'prompting' else kind})",
        dataset=dataset,
        model=spec,
        owner=researcher("live"),
        status=args["status"],
        protocol=get_kind(kind).validate_protocol(args["protocol"]),
        design=validate_design(
            get_kind(kind), args.get("design") or {}, models=model_kinds_by_id([spec])
        ),
        **extra,
    )
    out = {"id": study.pk, "model_id": spec.pk, "participants": []}
    for _ in range(args["participants"]):
        participant = enrol_participant(study)
        if args["consented"]:
            participant.consent_version = study.consent_version
            participant.consented_at = timezone.now()
            participant.save(update_fields=["consent_version", "consented_at"])
        assignments = list(participant.assignments.order_by("order").select_related("image"))
        out["participants"].append(
            {
                "token": participant.token,
                "code": participant.code,
                "assignments": [a.pk for a in assignments],
                "width": assignments[0].image.width,
                "height": assignments[0].image.height,
            }
        )
    return out


def _allocations(args: dict) -> dict:
    """The study's randomisation log and every participant's arm and consent."""
    from studies.models import Allocation, Participant

    return {
        "log": list(
            Allocation.objects.filter(study_id=args["study"])
            .order_by("sequence")
            .values("sequence", "participant__code", "arm", "block", "slot")
        ),
        "participants": list(
            Participant.objects.filter(study_id=args["study"])
            .order_by("number")
            .values("code", "arm", "consented_at")
        ),
    }


def _embed(args: dict) -> dict:
    """Fill the embedding cache through the real `batch` queue (embed_image per image)."""
    from studies.models import Study
    from workers.tasks import embed_image

    study = Study.objects.get(pk=args["study"])
    ids = list(study.dataset.images.values_list("pk", flat=True))
    results = [embed_image.apply_async(args=[study.model_id, pk]) for pk in ids]
    return {"images": len(ids), "model_ids": sorted({r.get(timeout=600) for r in results})}


def _export(args: dict) -> dict:
    """Run one export (studies.core.exports.run_export) into args["out"]; with args["pause_s"]
    every tidy table is followed by that pause (write_csv and masks.jsonl wrapped here, in the
    test harness), so clicks that land during the export fall between its tables."""
    import time as _time

    from studies.core.exports import archive as archive_module
    from studies.core.exports import run_export
    from studies.models import Study
    from studies.prompting.exports import tidy

    pause = float(args.get("pause_s", 0))
    if pause:
        original_write_csv, original_open_text = (
            tidy.write_csv,
            archive_module.ExportArchive.open_text,
        )

        def slow_write_csv(*a, **k):
            n = original_write_csv(*a, **k)
            _time.sleep(pause)
            return n

        @contextlib.contextmanager
        def slow_open_text(self, name, *a, **k):
            with original_open_text(self, name, *a, **k) as out:
                yield out
            _time.sleep(pause)

        tidy.write_csv = slow_write_csv
        archive_module.ExportArchive.open_text = slow_open_text
    head = run_export(Study.objects.get(pk=args["study"]), args.get("format", "tidy"), args["out"])
    return {"counts": head["counts"]}


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    command, payload = sys.argv[1], json.loads(sys.argv[2])
    steps = {"seed": _seed, "embed": _embed, "export": _export, "allocations": _allocations}
    if command not in steps:
        raise SystemExit(f"unknown step {command!r}; choose one of {sorted(steps)}")
    print(json.dumps(steps[command](payload), default=str))
