from django.contrib import admin

from studies import models


class OwnedAdmin(admin.ModelAdmin):
    """A data set or model spec added in the admin belongs to whoever added it (sharing:
    studies.core.sharing)."""

    filter_horizontal = ("collaborators",)

    def save_model(self, request, obj, form, change):
        if obj.owner_id is None and not change:
            obj.owner = request.user
        super().save_model(request, obj, form, change)


class DatasetImageInline(admin.TabularInline):
    model = models.DatasetImage
    extra = 0
    fields = ("index", "image", "mask", "class_label", "class_name", "width", "height", "sha256")
    readonly_fields = ("sha256",)


@admin.register(models.Dataset)
class DatasetAdmin(OwnedAdmin):
    list_display = ("name", "source", "seed", "owner", "shared_with_lab", "created_at")
    inlines = [DatasetImageInline]


@admin.register(models.DatasetImage)
class DatasetImageAdmin(admin.ModelAdmin):
    list_display = ("dataset", "index", "class_name", "width", "height")
    list_filter = ("dataset",)


@admin.register(models.ModelSpec)
class ModelSpecAdmin(OwnedAdmin):
    list_display = ("name", "kind", "architecture", "weights_sha256", "owner", "shared_with_lab")


class ParticipantInline(admin.TabularInline):
    model = models.Participant
    extra = 0
    fields = ("code", "consented_at", "completed_at")
    readonly_fields = fields
    show_change_link = True


@admin.register(models.Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("title", "kind", "status", "dataset", "model", "owner")
    list_filter = ("kind", "status")
    filter_horizontal = ("collaborators",)
    inlines = [ParticipantInline]


@admin.register(models.Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = ("code", "study", "consented_at", "completed_at")
    list_filter = ("study",)
    readonly_fields = ("token",)


@admin.register(models.Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("participant", "image", "order", "status", "stop_reason")
    list_filter = ("status", "participant__study")


@admin.register(models.PromptEvent)
class PromptEventAdmin(admin.ModelAdmin):
    list_display = ("assignment", "seq", "action", "mode", "timestep", "round", "iou", "latency_ms")
    list_filter = ("action",)


@admin.register(models.InterventionTrial)
class InterventionTrialAdmin(admin.ModelAdmin):
    list_display = (
        "assignment",
        "seq",
        "operation",
        "substrate",
        "prob_before",
        "prob_after",
        "flipped",
    )


@admin.register(models.ImageAnalysis)
class ImageAnalysisAdmin(admin.ModelAdmin):
    list_display = ("image", "model", "method", "created_at")


@admin.register(models.Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("study", "kind", "status", "progress", "created_at")
    list_filter = ("kind", "status")


@admin.register(models.TrustEvaluation)
class TrustEvaluationAdmin(admin.ModelAdmin):
    list_display = ("pk", "model", "dataset", "created_by", "status", "done", "total", "created_at")
    list_filter = ("status",)
