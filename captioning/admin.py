"""Admin pages. Facts measured from an upload or written by a worker are read-only,
because editing them would make the record disagree with the image and the model.
"""

from django import forms
from django.contrib import admin, messages

from captioning import inference, services
from captioning.models import CaptionJob, ModelVersion


class ModelVersionForm(forms.ModelForm):
    class Meta:
        model = ModelVersion
        fields = ["name", "checkpoint"]

    def clean_checkpoint(self) -> str:
        from ml.checkpoint import CheckpointError

        checkpoint = self.cleaned_data["checkpoint"]
        try:
            inference.checkpoint_fields(checkpoint)
        except CheckpointError as error:
            raise forms.ValidationError(f"Not a usable checkpoint: {error}") from error
        return checkpoint


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    form = ModelVersionForm
    list_display = ["name", "is_active", "checkpoint", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "checkpoint"]
    # Config and scores come from the checkpoint file; activation goes through the
    # action, which keeps exactly one version active.
    readonly_fields = ["config", "scores", "is_active", "created_at"]
    actions = ["activate"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            # Jobs name the checkpoint they ran with; swapping the file would lie.
            fields.append("checkpoint")
        return fields

    def has_delete_permission(self, request, obj=None):
        # Deleting the active version would leave new jobs nothing to run on;
        # activate another version first.
        if obj is not None and obj.is_active:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        version = services.model_version_create(name=obj.name, checkpoint=obj.checkpoint)
        obj.pk = version.pk
        obj.refresh_from_db()

    @admin.action(description="Activate the selected model version")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version to activate.", messages.ERROR)
            return
        version = services.model_version_activate(model_version=queryset.get())
        self.message_user(request, f"Model version {version.name} is now active.")


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
