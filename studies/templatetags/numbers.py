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
