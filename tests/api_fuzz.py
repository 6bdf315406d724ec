"""Fuzz every operation of the API's OpenAPI schema against a live server with schemathesis:
seeded, a bounded number of examples per operation. Used by tests/core/test_api_fuzz.py (short)
and bench/fuzz_api.py (longer). Counts answers by status, server errors (5xx) and responses
that break the schema, and the slowest answer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import requests


@dataclass
class FuzzReport:
    endpoints: int = 0
    cases: int = 0
    server_errors: int = 0
    schema_failures: int = 0
    slowest_s: float = 0.0
    slowest: str = ""
    statuses: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "endpoints": self.endpoints,
            "cases": self.cases,
            "5xx": self.server_errors,
            "schema_failures": self.schema_failures,
            "slowest_s": round(self.slowest_s, 3),
            "slowest": self.slowest,
            "statuses": dict(sorted(self.statuses.items())),
        }


def fuzz(
    base_url: str,
    headers_for,
    *,
    real_ids: dict[str, list[int]] | None = None,
    examples: int = 25,
    seed: int = 11,
    session: requests.Session | None = None,
) -> FuzzReport:
    """Run `examples` generated cases per operation; `headers_for(path) -> dict` gives each
    operation its credentials (a participant's bearer token, a researcher's CSRF header)."""
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/schema/?format=json")
    report = FuzzReport()
    # the signed-in cookies, copied once: a call with a generated (bad) session cookie makes
    # Django clear it, which would sign a shared cookie jar out
    cookies = dict(session.cookies) if session is not None else {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/schema/"):
            continue
        report.endpoints += 1
        _fuzz_operation(
            operation,
            headers_for(operation.path),
            report,
            base_url,
            cookies,
            examples,
            seed,
            real_ids or {},
        )
    return report


def _fuzz_operation(
    operation, headers, report, base_url, cookies, examples, seed, real_ids
) -> None:
    """Every other case uses real ids in its path and the signed-in session's own cookies
    (instead of generated ones), so the checks past authentication and lookup are reached."""
    import hypothesis
    from hypothesis import HealthCheck, Phase, given
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    if True:

        @hypothesis.settings(
            max_examples=examples,
            derandomize=False,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        @hypothesis.seed(seed)
        @given(case=operation.as_strategy())
        def run(case):
            if report.cases % 2 == 0:
                for name in list(case.path_parameters or {}):
                    if real_ids.get(name):
                        choices = real_ids[name]
                        case.path_parameters[name] = choices[report.cases % len(choices)]
                case.cookies = dict(cookies)
            started = time.perf_counter()
            with requests.Session() as fresh:
                response = case.call(base_url=base_url, headers=headers, session=fresh)
            took = time.perf_counter() - started
            report.cases += 1
            status = response.status_code
            report.statuses[status] = report.statuses.get(status, 0) + 1
            if took > report.slowest_s:
                report.slowest_s = took
                report.slowest = f"{operation.method.upper()} {operation.path} -> {status}"
            if status >= 500:
                report.server_errors += 1
                report.failures.append(
                    f"{operation.method.upper()} {case.formatted_path} -> {status}: "
                    f"{response.text[:300]}"
                )
                return
            try:
                case.validate_response(
                    response, checks=[not_a_server_error, response_schema_conformance]
                )
            except Exception as exc:  # a schemathesis failure group: the response breaks the schema
                report.schema_failures += 1
                report.failures.append(
                    f"{operation.method.upper()} {case.formatted_path} -> {status}: "
                    f"{str(exc)[:400]}"
                )

        run()
