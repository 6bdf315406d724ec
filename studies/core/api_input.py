"""What the API accepts as a request body, before any view reads a field.

- A body above the view's cap (`max_body_bytes`, at most `DATA_UPLOAD_MAX_MEMORY_SIZE`) is a 413
  in the API's JSON error format, answered before the body is read.
- JSON is parsed by `SafeJSONParser`: nesting deeper than `MAX_DEPTH`, a non-finite number
  (`1e999`), an integer beyond 2**53 (JSON numbers are exact only up to there), a string holding
  NUL or a lone surrogate (neither can be stored in PostgreSQL text) are a 400 naming the field;
  a body nested too deep for Python's parser is the same 400, never a RecursionError.
"""

from __future__ import annotations

import codecs
import json
import math

from django.conf import settings
from rest_framework.parsers import JSONParser

from studies.core.api_errors import ApiError

MAX_DEPTH = 32
MAX_EXACT_INT = 2**53
DEFAULT_MAX_BODY_BYTES = 64 * 1024


def body_cap(view_cap: int | None) -> int:
    cap = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if view_cap is not None:
        cap = min(cap, view_cap) if cap else view_cap
    return cap


def check_body_size(request, view_cap: int | None) -> None:
    """413 when the declared body is above the cap (read nothing); 400 for a bad length."""
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw)
    except ValueError:
        raise ApiError(400, "the Content-Length header is not a number") from None
    cap = body_cap(view_cap)
    if cap and length > cap:
        raise ApiError(
            413, f"the request body is {length} bytes; this endpoint takes at most {cap}"
        )


def _where(path: list) -> str:
    return ".".join(str(p) for p in path) or "body"


def check_json_value(value) -> None:
    """Walk a parsed JSON value (iteratively); ApiError(400) naming the first bad field."""
    stack = [(value, [], 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ApiError(
                400, f"the body is nested deeper than {MAX_DEPTH} levels", field=_where(path[:1])
            )
        if isinstance(item, str):
            _check_string(item, path)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > MAX_EXACT_INT:
                raise ApiError(
                    400, f"field {_where(path)} is a number too large", field=_where(path)
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ApiError(
                    400, f"field {_where(path)} must be a finite number", field=_where(path)
                )
        elif isinstance(item, dict):
            for key, sub in item.items():
                _check_string(key, [*path, "<key>"])
                stack.append((sub, [*path, key], depth + 1))
        elif isinstance(item, list):
            for i, sub in enumerate(item):
                stack.append((sub, [*path, i], depth + 1))


def _check_string(text: str, path: list) -> None:
    if "\x00" in text:
        raise ApiError(400, f"field {_where(path)} holds a NUL character", field=_where(path))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(
                400, f"field {_where(path)} holds a lone surrogate (not UTF-8)", field=_where(path)
            ) from None


class SafeJSONParser(JSONParser):
    """DRF's JSON parser with the checks of this module (no 500 for any body)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
        except (UnicodeDecodeError, LookupError):
            raise ApiError(400, "the body is not valid UTF-8 JSON") from None
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except RecursionError:
            raise ApiError(400, f"the body is nested deeper than {MAX_DEPTH} levels") from None
        except ValueError as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None
        check_json_value(data)
        return data


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")
