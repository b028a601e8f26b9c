"""Admin pages. Facts measured from an upload or written by a worker are read-only,
because editing them would make the record disagree with the image and the model.
"""

from django.contrib import admin

from captioning.models import CaptionJob, ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "number", "status", "is_active", "created_at"]
    list_filter = ["status", "is_active"]
    search_fields = ["name", "description"]
    readonly_fields = [field.name for field in ModelVersion._meta.fields if field.name != "description"]

    def has_add_permission(self, request):
        return False


@admin.register(CaptionJob)
class CaptionJobAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "caption", "model_version", "format", "created_at"]
    list_filter = ["status", "model_version", "format"]
    search_fields = ["id", "caption", "original_filename", "sha256"]
    date_hierarchy = "created_at"
    list_select_related = ["model_version"]
    readonly_fields = [
        "id",
        "user",
        "image",
        "original_filename",
        "byte_size",
        "format",
        "width",
        "height",
        "sha256",
        "beam_size",
        "max_length",
        "status",
        "caption",
        "alternatives",
        "truncated",
        "error_message",
        "model_version",
        "created_at",
        "started_at",
        "finished_at",
        "model_seconds",
    ]

    def has_add_permission(self, request):
        # Jobs start from an upload, which the admin form cannot check and enqueue.
        return False
