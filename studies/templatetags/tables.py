"""Links for the researchers' tables: sort by a column (click again for descending) or go to a
page, keeping the rest of the table query (search, the other table's sort)."""

from __future__ import annotations

from urllib.parse import urlencode

from django import template

register = template.Library()


@register.simple_tag
def table_href(query: dict, param: str, value) -> str:
    """`?...` with `param` set to `value`; for a sort param, the same column again reverses it.
    Changing a sort or the search goes back to page 1 of that table."""
    params = {k: v for k, v in query.items() if v}
    if param in ("sort", "isort") and params.get(param) == value:
        value = f"-{value}"
    params[param] = value
    return "?" + urlencode(params)


@register.simple_tag
def page_href(query: dict, param: str, number: int, other_param: str, other) -> str:
    params = {k: v for k, v in query.items() if v}
    params[param] = number
    if other and getattr(other, "number", 1) > 1:
        params[other_param] = other.number
    return "?" + urlencode(params)
