"""Who may see a data set, a model spec or a trust evaluation (docs/researchers.md "Who sees
what"): its owner, its collaborators, every signed-in researcher when the owner shared it with
the lab, and superusers. Everyone else gets 404, as for another researcher's study.

A study is reached through its own owner and collaborators (studies.core.views_researcher):
whoever may see a study sees the images of its data set on the study's pages, since the study's
owner chose that data set. Sharing a data set or model is about building *new* studies and
evaluations on it, and about its own pages and files.

Collaborators are named by exact username. To a researcher who is not staff the form never
says whether a username exists: an unknown name and a name that may not be added (an inactive
account, the owner) get the same error (`parse_collaborators`).
"""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Model, Q, QuerySet

MAX_COLLABORATORS = 50


def visible_q(user, owner_field: str = "owner") -> Q:
    """The rows `user` may see (owner, collaborator, shared with the lab); superusers: all."""
    if user.is_superuser:
        return Q()
    return Q(**{owner_field: user}) | Q(collaborators=user) | Q(shared_with_lab=True)


def visible_to(queryset: QuerySet, user, owner_field: str = "owner") -> QuerySet:
    """`queryset` narrowed to the rows `user` may see (one row each, whatever the joins)."""
    if not user.is_authenticated:
        return queryset.none()
    if user.is_superuser:
        return queryset
    # a subquery of ids keeps the outer query free of the collaborators join (no duplicates,
    # annotations such as Count stay right)
    ids = queryset.model.objects.filter(visible_q(user, owner_field)).values("pk")
    return queryset.filter(pk__in=ids)


def visible_datasets(user) -> QuerySet:
    from studies.models import Dataset

    return visible_to(Dataset.objects.all(), user)


def visible_models(user) -> QuerySet:
    from studies.models import ModelSpec

    return visible_to(ModelSpec.objects.all(), user)


def owner_of(row: Model):
    """The owner's user id of a shareable row (TrustEvaluation's owner is `created_by`)."""
    return getattr(row, "owner_id", None) or getattr(row, "created_by_id", None)


def can_manage(row: Model, user) -> bool:
    """Only the owner (or a superuser) changes who a row is shared with."""
    return user.is_superuser or (user.is_authenticated and owner_of(row) == user.pk)


def parse_collaborators(raw: str, *, owner, requester) -> list:
    """The accounts named in `raw` (exact usernames, separated by commas or spaces).

    A researcher who is not staff learns nothing about which usernames exist: unknown, inactive
    and the owner's own name all get one error naming what was typed. Staff (who see the
    accounts in the admin anyway) get the precise reason."""
    names = list(dict.fromkeys((raw or "").replace(",", " ").split()))
    if len(names) > MAX_COLLABORATORS:
        raise forms.ValidationError(f"at most {MAX_COLLABORATORS} collaborators")
    users = {u.username: u for u in get_user_model().objects.filter(username__in=names)}
    owner_name = owner.username if owner is not None else None
    refused = [n for n in names if n not in users or not users[n].is_active or n == owner_name]
    if not refused:
        return [users[n] for n in names]
    if requester is not None and requester.is_staff:
        reasons = []
        for n in refused:
            if n not in users:
                reasons.append(f"no account is called {n}")
            elif n == owner_name:
                reasons.append(f"{n} is the owner, not a collaborator")
            else:
                reasons.append(f"the account {n} is inactive")
        raise forms.ValidationError("; ".join(reasons))
    raise forms.ValidationError(
        f"cannot share with {', '.join(refused)}: check the spelling (exact usernames of other "
        "researchers; not your own)"
    )


def collaborator_names(row: Model) -> str:
    if not row.pk:
        return ""
    return " ".join(row.collaborators.order_by("username").values_list("username", flat=True))


class SharingForm(forms.Form):
    """Who a data set, model spec or trust evaluation is shared with (its owner edits it)."""

    shared_with_lab = forms.BooleanField(
        required=False,
        label="Shared with everyone in the lab",
        help_text="every signed-in researcher may see it and build studies or evaluations on it",
    )
    collaborators = forms.CharField(
        required=False,
        label="Collaborators",
        help_text="exact usernames of other researchers, separated by commas or spaces",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )

    def __init__(self, *args, row: Model, requester, **kwargs):
        kwargs.setdefault(
            "initial",
            {"shared_with_lab": row.shared_with_lab, "collaborators": collaborator_names(row)},
        )
        super().__init__(*args, **kwargs)
        self.row, self.requester = row, requester
        if not hasattr(row, "owner_id"):  # a trust evaluation: nothing is built on it
            flag = self.fields["shared_with_lab"]
            flag.help_text = "every signed-in researcher may see it, its scores and its labels"

    def clean_collaborators(self) -> list:
        owner_id = owner_of(self.row)
        owner = get_user_model().objects.filter(pk=owner_id).first() if owner_id else None
        return parse_collaborators(
            self.cleaned_data.get("collaborators", ""), owner=owner, requester=self.requester
        )

    def save(self) -> None:
        self.row.shared_with_lab = self.cleaned_data["shared_with_lab"]
        self.row.save(update_fields=["shared_with_lab"])
        self.row.collaborators.set(self.cleaned_data["collaborators"])


def command_owner(username: str | None):
    """The owner of what a command-line tool creates: the account `username`, else the first
    superuser (the one who would have set the site up); None when there is no superuser either
    (the row then has no owner: only superusers see it, until one is set in the admin). An
    unknown `username` is a ValueError."""
    User = get_user_model()
    if username:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise ValueError(f"--owner: no account is called {username!r}")
        return user
    return User.objects.filter(is_superuser=True).order_by("pk").first()


def give_owner(row: Model, user) -> None:
    """Set the owner of a data set or model spec that was just created without one."""
    if user is None:
        return
    type(row).objects.filter(pk=row.pk, owner__isnull=True).update(owner=user)
    row.owner = user


def sharing_context(request, row, action: str, form=None):
    """What templates/core/_sharing.html shows for `row` (its owner gets the form)."""
    return {
        "sharing_row": row,
        "sharing_action": action,
        "sharing_form": form or SharingForm(row=row, requester=request.user),
        "sharing_can_manage": can_manage(row, request.user),
        # the other collaborators' names are the owner's to see, not every reader's
        "sharing_is_collaborator": row.collaborators.filter(pk=request.user.pk).exists(),
    }
