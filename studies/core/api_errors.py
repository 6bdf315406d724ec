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
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": str(response.data["detail"])}
    return response
