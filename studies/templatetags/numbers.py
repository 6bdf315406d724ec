"""`{{ value|num:3 }}`: a number with that many decimals, or an em dash for no value (None or
NaN), so no page ever reads "nan"."""

from __future__ import annotations

import math

from django import template
from django.template.defaultfilters import floatformat

register = template.Library()


@register.filter
def num(value, digits=3):
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return floatformat(value, digits)


@register.filter
def pixel_limit(value) -> str:
    """A pixel count in words: `4096 x 4096 pixels` when it is a square, else `16,000,000
    pixels (about 4000 x 4000)`."""
    n = int(value)
    side = math.isqrt(n)
    if side * side == n:
        return f"{side} x {side} pixels"
    return f"{n:,} pixels (about {side} x {side})"
