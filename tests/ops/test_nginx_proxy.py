"""Behind a real nginx (issue 23): Debian's nginx in front of gunicorn, PostgreSQL, Redis (the
shared cache every gunicorn process counts in), each client from its own loopback address.

- 40 participants, each from its own address (127.0.0.2 ... 127.0.0.41), all enrol into a
  public study: the per-address throttle (30 an hour) sees 40 clients, not the proxy;
- 31 consents from one address within the hour: the 31st is throttled, and a client that sends
  its own X-Forwarded-For does not escape;
- 10 wrong passwords from one address lock only that address out: the researcher signs in
  from another;
- /healthz through the proxy shows no details (it did to "this machine" before).
Skipped, with the reason, when PostgreSQL, Redis or nginx is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.live_stack import LiveStack, free_port, services_missing

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
RATE = 30
FAILURES = 10

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


class FromAddress(HTTPAdapter):
    """Open every connection from one local address (127.0.0.x: all of 127/8 is loopback)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


def session_from(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    return session


@pytest.fixture(scope="module")
def proxied():
    reason = services_missing() or (None if Path(NGINX).exists() else "nginx is not installed")
    if reason:
        print(f"SKIP integration: {reason}")
        pytest.skip(reason)
    env = {
        "TRUSTED_PROXIES": "127.0.0.1",
        "ENROLMENT_RATE_PER_HOUR": str(RATE),
        "AXES_FAILURE_LIMIT": str(FAILURES),
    }
    with LiveStack(
        participants=0, images=2, queues=(), web_workers=2, web_threads=4, env=env
    ) as stack:
        port = free_port()
        tmp = stack.tmp / "nginx"
        tmp.mkdir()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, upstream=stack.port))
        proxy = subprocess.Popen(
            [NGINX, "-p", str(tmp), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    requests.get(f"{base}/healthz", timeout=2)
                    break
                except requests.ConnectionError:
                    if proxy.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"nginx did not start: {proxy.stderr.read().decode()[-2000:]}"
                        ) from None
                    time.sleep(0.1)
            yield stack, base
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)


def consent(session: requests.Session, base: str, study_id: int, headers=None) -> int:
    """Open the public link, then consent as a browser would (CSRF cookie and field)."""
    page = session.get(f"{base}/s/{study_id}/join", headers=headers, timeout=30)
    assert page.status_code == 200, page.text[:300]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    version = re.search(r'name="version" value="([^"]*)"', page.text).group(1)
    answer = session.post(
        f"{base}/s/{study_id}/consent",
        data={"agree": "yes", "version": version, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/s/{study_id}/consent", **(headers or {})},
        allow_redirects=False,
        timeout=30,
    )
    return answer.status_code


def participants(stack) -> int:
    return stack.sql(
        "SELECT count(*) FROM studies_participant WHERE study_id = %s", (stack.study["id"],)
    )[0][0]


def test_forty_participants_from_forty_addresses_all_enrol(proxied):
    stack, base = proxied
    before = participants(stack)
    answers = [consent(session_from(f"127.0.0.{k}"), base, stack.study["id"]) for k in range(2, 42)]
    assert answers == [302] * 40
    assert participants(stack) == before + 40


def test_one_address_is_throttled_at_31_even_with_its_own_forwarded_for(proxied):
    stack, base = proxied
    before = participants(stack)
    address = "127.0.0.50"
    answers = [consent(session_from(address), base, stack.study["id"]) for _ in range(RATE)]
    assert answers == [302] * RATE
    assert consent(session_from(address), base, stack.study["id"]) == 429
    spoofed = {"X-Forwarded-For": "10.11.12.13"}
    assert consent(session_from(address), base, stack.study["id"], headers=spoofed) == 429
    assert participants(stack) == before + RATE


def sign_in(session: requests.Session, base: str, password: str) -> requests.Response:
    page = session.get(f"{base}/accounts/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return session.post(
        f"{base}/accounts/login/",
        data={"username": "live", "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/accounts/login/"},
        allow_redirects=False,
        timeout=30,
    )


def test_wrong_passwords_lock_out_only_that_address(proxied):
    stack, base = proxied
    attacker = session_from("127.0.0.60")
    for _ in range(FAILURES):
        assert sign_in(attacker, base, "wrong password").status_code in (200, 429)
    assert sign_in(attacker, base, "pw-live").status_code == 429
    researcher = sign_in(session_from("127.0.0.61"), base, "pw-live")
    assert researcher.status_code == 302 and researcher.headers["Location"] == "/studies/"


def test_healthz_through_the_proxy_shows_no_details(proxied):
    stack, base = proxied
    body = requests.get(f"{base}/healthz", timeout=10).json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {"ok": True} and body["checks"]["broker"] == {"ok": True}
    probe = requests.get(f"{base}/healthz", headers=stack.healthz_headers, timeout=10).json()
    assert probe["checks"]["database"]["vendor"] == "postgresql"
