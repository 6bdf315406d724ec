"""docker/compose.yaml against the Compose Specification, the commands it runs against the
project, the .env template and the production settings (`check --deploy`). No image is built.

The schema is docker/compose-spec.json, vendored from Debian's docker-compose package
(/usr/lib/python3/dist-packages/compose/config/compose_spec.json, docker-compose 1.29.2); when
Debian's `docker-compose` is installed the file also goes through its own `config` check.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
PYTHON = sys.executable


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def env_template() -> dict[str, str]:
    out = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def command_argv(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def test_compose_file_is_valid_against_the_compose_specification(compose):
    schema = json.loads((DOCKER / "compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft7Validator
    )
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_schema_rejects_a_broken_compose_file(compose):
    """The validation has teeth: an unknown service key and a bad depends_on condition fail."""
    schema = json.loads((DOCKER / "compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft7Validator
    )
    broken = json.loads(json.dumps(compose))
    broken["services"]["web"]["comand"] = ["gunicorn"]
    broken["services"]["web"]["depends_on"]["redis"]["condition"] = "service_ready"
    assert len(list(validator_class(schema).iter_errors(broken))) >= 2


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="Debian's docker-compose is not installed (apt-get install docker-compose)",
)
def test_docker_compose_config_accepts_the_file_with_a_filled_env(tmp_path):
    (tmp_path / "docker").mkdir()
    shutil.copy(DOCKER / "compose.yaml", tmp_path / "docker" / "compose.yaml")
    env = env_template()
    env.update(
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50), POSTGRES_PASSWORD="pw", REDIS_PASSWORD="rp"
    )
    (tmp_path / "docker" / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    done = subprocess.run(
        ["docker-compose", "--env-file", "docker/.env", "-f", "docker/compose.yaml", "--profile", "gpu", "config"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) - {"minio", "minio-bucket"} == {
        "postgres",
        "redis",
        "migrate",
        "web",
        "worker-cpu",
        "worker-gpu",
    }
    for optional in ("minio", "minio-bucket"):  # docker-compose 1.29 lists every profile's
        if optional in resolved["services"]:
            assert resolved["services"][optional]["profiles"] == ["s3"]
    assert resolved["services"]["worker-gpu"]["profiles"] == ["gpu"]
    assert (
        "postgres://intervene:pw@postgres:5432/intervene"
        == resolved["services"]["web"]["environment"]["DATABASE_URL"]
    )
    (tmp_path / "empty.env").write_text("DJANGO_ENV=production\n")
    missing = subprocess.run(
        ["docker-compose", "--env-file", "empty.env", "-f", "docker/compose.yaml", "config", "-q"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr  # secrets are required


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="Debian's docker-compose is not installed (apt-get install docker-compose)",
)
def test_object_storage_profile_and_the_worker_only_file_resolve(tmp_path):
    """--profile s3 adds MinIO and its bucket job; compose.worker.yaml starts only a GPU worker
    that needs the database, broker and store URLs (issue 23)."""
    (tmp_path / "docker").mkdir()
    for name in ("compose.yaml", "compose.worker.yaml"):
        shutil.copy(DOCKER / name, tmp_path / "docker" / name)
    env = env_template()
    env.update(
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        POSTGRES_PASSWORD="pw",
        REDIS_PASSWORD="rp",
        MINIO_ROOT_PASSWORD="minio-secret",
        STORAGE_URL="s3://intervene?endpoint_url=http://minio:9000",
    )
    (tmp_path / "docker" / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    done = subprocess.run(
        ["docker-compose", "--env-file", "docker/.env", "-f", "docker/compose.yaml", "--profile", "s3", "config"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert {"minio", "minio-bucket"} <= set(services)
    assert "mc mb --ignore-existing" in " ".join(services["minio-bucket"]["command"])
    assert services["web"]["environment"]["STORAGE_URL"].startswith("s3://intervene")

    worker_env = {
        "DATABASE_URL": "postgres://intervene:pw@web.lab:5432/intervene",
        "CELERY_BROKER_URL": "redis://:rp@web.lab:6379/0",
        "STORAGE_URL": "s3://intervene?endpoint_url=http://web.lab:9000",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    }
    (tmp_path / "docker" / "worker.env").write_text(
        "".join(f"{k}={v}\n" for k, v in worker_env.items())
    )
    worker = subprocess.run(
        ["docker-compose", "--env-file", "docker/worker.env", "-f", "docker/compose.worker.yaml", "config"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    resolved = yaml.safe_load(worker.stdout)["services"]
    assert set(resolved) == {"worker-gpu"}
    environment = resolved["worker-gpu"]["environment"]
    assert environment["STORAGE_URL"] == worker_env["STORAGE_URL"]
    assert environment["MEDIA_ROOT"] == "/cache/media"
    (tmp_path / "docker" / "worker.env").write_text("DJANGO_SECRET_KEY=x\n")
    missing = subprocess.run(
        ["docker-compose", "--env-file", "docker/worker.env", "-f", "docker/compose.worker.yaml", "config", "-q"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode != 0 and "DATABASE_URL" in missing.stderr


def test_worker_compose_file_is_valid_and_its_template_covers_it():
    schema = json.loads((DOCKER / "compose-spec.json").read_text())
    worker = yaml.safe_load((DOCKER / "compose.worker.yaml").read_text())
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    errors = list(validator(schema).iter_errors(worker))
    assert not errors, "\n".join(e.message for e in errors)
    used = set(
        re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", (DOCKER / "compose.worker.yaml").read_text())
    )
    template = {
        line.partition("=")[0].strip()
        for line in (DOCKER / "worker.env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert used <= template, sorted(used - template)


def test_services_topology_volumes_and_health_checks(compose):
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker-cpu", "worker-gpu"} <= set(services)
    for name in ("postgres", "redis", "web", "worker-cpu", "worker-gpu"):
        assert "healthcheck" in services[name], f"{name} has no health check"
    for name in ("web", "worker-cpu", "worker-gpu", "migrate"):
        mounts = " ".join(services[name]["volumes"])
        assert "media:/data/media" in mounts and "embeddings:/data/embeddings" in mounts, name
        assert services[name]["env_file"] == ".env"
    assert {"media", "embeddings", "pgdata"} <= set(compose["volumes"])
    gpu = services["worker-gpu"]
    assert gpu["runtime"] == "nvidia" and gpu["profiles"] == ["gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    argv = command_argv(gpu)
    assert argv[argv.index("-Q") + 1] == "interactive,batch" and "--concurrency=1" in argv
    assert "gunicorn" in command_argv(services["web"])[0]
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])


def test_every_service_command_exists_in_the_project(compose):
    from django.core.management import get_commands
    from django.urls import resolve

    from config.settings import CELERY_TASK_ROUTES

    queues = {route["queue"] for route in CELERY_TASK_ROUTES.values()}
    for name, service in compose["services"].items():
        if "command" not in service or name in ("redis", "minio", "minio-bucket"):
            continue  # third-party images: their own commands
        argv = command_argv(service)
        program = argv[0]
        assert (Path(PYTHON).parent / program).exists() or program == "python", (
            f"{name}: {program} is not installed in the venv"
        )
        if program == "python":
            assert argv[1] == "manage.py" and (ROOT / "manage.py").is_file()
            assert argv[2] in get_commands(), f"{name}: no management command {argv[2]!r}"
        elif program == "gunicorn":
            module, _, attr = argv[1].partition(":")
            module_obj = __import__(module, fromlist=[attr])
            assert callable(getattr(module_obj, attr)), f"{name}: {argv[1]} is not a WSGI callable"
        elif program == "celery":
            assert argv[1:4] == ["-A", "config", "worker"]
            from config import celery_app

            assert celery_app.main == "intervene"
            for queue in re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", argv[argv.index("-Q") + 1]).split(
                ","
            ):
                assert queue in queues, f"{name}: queue {queue!r} is not routed ({sorted(queues)})"
        else:
            raise AssertionError(f"{name}: unexpected program {program}")
    # the health checks' own commands
    assert resolve("/healthz").func.__name__ == "healthz"
    help_text = subprocess.run(
        [str(Path(PYTHON).parent / "celery"), "-A", "config", "inspect", "ping", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert help_text.returncode == 0 and "--destination" in help_text.stdout


def test_env_template_covers_every_variable_and_holds_no_secret(compose):
    text = (DOCKER / "compose.yaml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    env = env_template()
    assert used <= set(env), f"missing in .env.example: {sorted(used - set(env))}"
    for secret in ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        assert env[secret] == "", f"{secret} must be empty in the template"
    assert env["DJANGO_ENV"] == "production"


def test_dockerfile_copies_existing_paths_and_runs_gunicorn():
    text = (DOCKER / "Dockerfile").read_text()
    for source in re.findall(r"^COPY\s+(\S+)\s+\S+$", text, flags=re.M):
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
    assert "collectstatic --noinput" in text
    assert 'CMD ["gunicorn", "config.wsgi:application"' in text
    assert "torch==2.14.1" in text and "torch==2.14.1" in (ROOT / "pyproject.toml").read_text()


def production_env(**extra: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "CELERY_"))
    }
    env.update(
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL="postgres://intervene:pw@127.0.0.1:5432/intervene",
        CELERY_BROKER_URL="redis://:pw@127.0.0.1:6379/0",
        DJANGO_ALLOWED_HOSTS="intervene.example.org,localhost",
    )
    env.update(extra)
    return env


def test_check_deploy_passes_with_the_production_environment():
    done = subprocess.run(
        [PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"])
def test_production_refuses_to_start_without_its_secrets_and_services(missing):
    env = production_env()
    env.pop(missing)
    done = subprocess.run(
        [PYTHON, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and missing in done.stderr


def test_production_serves_healthz_over_plain_http_but_redirects_pages():
    """The container health check speaks HTTP to localhost; everything else goes to HTTPS."""
    code = (
        "import django; django.setup();"
        "from django.test import Client; c = Client(HTTP_HOST='localhost');"
        "print(c.get('/accounts/login/').status_code, c.get('/healthz').status_code)"
    )
    env = production_env(
        DATABASE_URL=f"sqlite:///{ROOT / 'db.sqlite3'}",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    done = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    login, health = done.stdout.split()[-2:]
    assert login == "301" and health in ("200", "503")  # 503 only when Redis is down here


def test_deploy_docs_cover_running_gpu_workers_and_checkpoints():
    text = (ROOT / "docs" / "deploy.md").read_text()
    for needle in (
        "docker compose",
        "--profile gpu",
        "SAM_CHECKPOINT",
        "/models",
        "another machine",
        "queue_status",
        "/healthz",
        "check --deploy",
    ):
        assert needle in text, f"docs/deploy.md does not mention {needle!r}"


def test_queue_status_without_a_broker_says_why():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="CELERY_BROKER_URL is not set"):
        call_command("queue_status")


def test_queue_status_reports_an_unreachable_broker(settings):
    from django.core.management import CommandError, call_command

    from config.celery_app import app

    port = __import__(
        "tests.live_stack", fromlist=["free_port"]
    ).free_port()  # nothing listens there
    settings.CELERY_TASK_ALWAYS_EAGER = False
    previous = app.conf.broker_url
    app.conf.broker_url = f"redis://127.0.0.1:{port}/0"
    try:
        with pytest.raises(CommandError, match="cannot be reached"):
            call_command("queue_status", "--timeout", "0.5")
    finally:
        app.conf.broker_url = previous
