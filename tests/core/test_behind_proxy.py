"""Behind a reverse proxy (issue 23): the client's address comes from X-Forwarded-For only
through the configured trusted proxies, for the enrolment throttle and for django-axes alike;
/healthz details go to staff or the configured token, never by address. The same rules are
tried end to end through a real nginx in tests/ops/test_nginx_proxy.py."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory

from config.client_ip import client_ip, parse_networks
from tests.factories import prompting_study, researcher

pytestmark = pytest.mark.django_db


def _ip(remote, forwarded=None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return client_ip(RequestFactory().get("/", REMOTE_ADDR=remote, **extra))


def test_without_trusted_proxies_the_header_is_ignored(settings):
    settings.TRUSTED_PROXIES = []
    assert _ip("198.51.100.7", "203.0.113.1") == "198.51.100.7"


@pytest.mark.parametrize(
    "trusted, remote, forwarded, client",
    [
        (["127.0.0.1"], "127.0.0.1", "203.0.113.1", "203.0.113.1"),
        # a client-written entry lies left of the one the proxy appended: never reached
        (["127.0.0.1"], "127.0.0.1", "10.9.9.9, 203.0.113.1", "203.0.113.1"),
        (["127.0.0.1"], "127.0.0.1", "not-an-address, 203.0.113.1", "203.0.113.1"),
        # a connection that does not come from a trusted proxy: its header is ignored
        (["127.0.0.1"], "198.51.100.7", "203.0.113.1", "198.51.100.7"),
        # two proxies in a trusted network (load balancer -> nginx -> gunicorn)
        (["10.0.0.0/8"], "10.0.0.2", "6.6.6.6, 203.0.113.1, 10.0.0.5", "203.0.113.1"),
        # every hop trusted: the leftmost address is all there is
        (["10.0.0.0/8"], "10.0.0.2", "10.0.0.7", "10.0.0.7"),
        (["127.0.0.1"], "127.0.0.1", "", "127.0.0.1"),
        (["::1"], "::1", "2001:db8::5", "2001:db8::5"),
        (["127.0.0.1"], "127.0.0.1", "[2001:db8::5]:4711", "2001:db8::5"),
        (["127.0.0.1"], "127.0.0.1", "203.0.113.1:4711", "203.0.113.1"),
    ],
)
def test_the_client_is_the_first_untrusted_address_from_the_right(
    settings, trusted, remote, forwarded, client
):
    settings.TRUSTED_PROXIES = trusted
    assert _ip(remote, forwarded) == client


def test_a_bad_trusted_proxy_setting_is_named():
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        parse_networks("127.0.0.1, 10.0.0.300")
    assert [str(n) for n in parse_networks(" 127.0.0.1 ,10.0.0.0/8,")] == [
        "127.0.0.1/32",
        "10.0.0.0/8",
    ]


def test_settings_refuse_a_bad_cache_url_and_bad_proxies():
    import subprocess
    import sys

    for env, words in (
        ({"TRUSTED_PROXIES": "proxy.local"}, "'proxy.local' is not an IP address"),
        ({"CACHE_URL": "memcached://x"}, "CACHE_URL must be a redis://"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", "import django; django.setup()"],
            env={"DJANGO_SETTINGS_MODULE": "config.settings", "PATH": "/usr/bin", **env},
            capture_output=True,
            text=True,
        )
        assert done.returncode != 0 and words in done.stderr, done.stderr[-500:]
        assert ImproperlyConfigured.__name__ in done.stderr


def _consent(study, remote, forwarded=None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    return Client(REMOTE_ADDR=remote).post(
        f"/s/{study.pk}/consent", {"agree": "yes", "version": study.consent_version}, **extra
    )


def test_throttle_counts_each_client_behind_the_proxy(settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    settings.ENROLMENT_RATE_PER_HOUR = 2
    study = prompting_study(participants=0, n_images=1)
    # five people through the proxy: five clients, not one
    for k in range(5):
        assert _consent(study, "127.0.0.1", f"203.0.113.{k + 1}").status_code == 302
    # one of them, twice more: its third is refused, also when it writes its own header
    assert _consent(study, "127.0.0.1", "203.0.113.1").status_code == 302
    assert _consent(study, "127.0.0.1", "203.0.113.1").status_code == 429
    assert _consent(study, "127.0.0.1", "10.9.9.9, 203.0.113.1").status_code == 429
    assert study.participants.count() == 6


def test_a_client_without_a_proxy_cannot_pose_as_many(settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    settings.ENROLMENT_RATE_PER_HOUR = 2
    study = prompting_study(participants=0, n_images=1)
    answers = [_consent(study, "198.51.100.7", f"203.0.113.{k}").status_code for k in range(4)]
    assert answers == [302, 302, 429, 429]


def _login(remote, forwarded, password):
    return Client(REMOTE_ADDR=remote).post(
        "/accounts/login/",
        {"username": "alice", "password": password},
        HTTP_X_FORWARDED_FOR=forwarded,
    )


def test_axes_locks_the_forwarded_address_not_the_proxy(settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    user = researcher("alice")
    user.set_password("correct horse battery")
    user.save()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login("127.0.0.1", "203.0.113.66", "wrong")
    assert _login("127.0.0.1", "203.0.113.66", "correct horse battery").status_code == 429
    # a header of its own does not get the attacker out
    assert (
        _login("127.0.0.1", "192.0.2.1, 203.0.113.66", "correct horse battery").status_code == 429
    )
    # the researcher, through the same proxy from another address, signs in
    own = _login("127.0.0.1", "192.0.2.1", "correct horse battery")
    assert own.status_code == 302 and own["Location"] == "/studies/"


def test_healthz_details_by_token_or_staff_never_by_address(client, settings):
    settings.HEALTHZ_TOKEN = "s3cret-probe"
    local = client.get("/healthz")  # the test client is 127.0.0.1: "this machine"
    assert local.status_code == 200 and local.json()["checks"]["database"] == {"ok": True}
    wrong = client.get("/healthz", HTTP_X_HEALTHZ_TOKEN="guess")
    assert "vendor" not in wrong.json()["checks"]["database"]
    probe = client.get("/healthz", HTTP_X_HEALTHZ_TOKEN="s3cret-probe")
    assert probe.json()["checks"]["database"]["vendor"] == "sqlite"
    settings.HEALTHZ_TOKEN = ""
    assert (
        "vendor" not in client.get("/healthz", HTTP_X_HEALTHZ_TOKEN="").json()["checks"]["database"]
    )
