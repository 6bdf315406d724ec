"""`{% prompt_regression_section study %}`: the analysis page's "What predicts a good prompt"
section (templates/prompting/_regression.html), its context from the cached Job."""

from django import template

register = template.Library()


@register.inclusion_tag("prompting/_regression.html", takes_context=True)
def prompt_regression_section(context, study):
    from studies.prompting.views_regression import regression_context

    return {"study": study, "csrf_token": context.get("csrf_token"), **regression_context(study)}
