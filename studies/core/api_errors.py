"""Error answers of the API: always JSON `{"error": message, ...}` naming the problem."""


class ApiError(Exception):
    """Raised by services; the API answers `status` with `{"error": message, **extra}`."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def exception_handler(exc, context):
    # imported here: DRF's views module reads the parser setting, whose parser raises ApiError
    from rest_framework.response import Response
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, ApiError):
        return Response({"error": exc.message, **exc.extra}, status=exc.status)
    if store_unavailable(exc):
        return Response(
            {"error": f"the file store is unavailable right now ({type(exc).__name__}); retry"},
            status=503,
            headers={"Retry-After": "5"},
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": str(response.data["detail"])}
    return response


def store_unavailable(exc: BaseException) -> bool:
    """An object-storage failure that is not the request's fault (the store down, refusing,
    or answering 5xx): the answer is 503 and a retry, never a 500."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return False
    if isinstance(exc, BotoCoreError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or status in (0, 403)
    return False
