"""Admin pages. Facts measured from an upload or written by a worker are read-only,
because editing them would make the record disagree with the image and the model.

Model versions change only through captioning.registry: the pages below confirm each
step (activate, roll back, alias, retire, evaluate, canary share) and then call it.
"""

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from captioning import admin_views, dashboard, evaluations, registry, selectors
from captioning.admin_forms import AliasForm, CanaryForm, EvaluationForm, ModelVersionUploadForm
from captioning.models import CaptionJob, Evaluation, ModelActivation, ModelVersion

# Metrics shown in the version list, in this order, from the first scored dataset.
LIST_METRICS = [("cider", "CIDEr"), ("bleu4", "BLEU-4")]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "label_display",
        "status_display",
        "is_active",
        "aliases_display",
        "scores_summary",
        "created_at",
        "registered_by",
    ]
    list_filter = ["status", "is_active", "name"]
    search_fields = ["name", "description"]
    list_select_related = ["registered_by"]
    actions = ["activate_selected", "retire_selected", "compare"]
    change_form_template = "admin/captioning/modelversion/change_form.html"
    change_list_template = "admin/captioning/modelversion/change_list.html"
    fieldsets = [
        (None, {"fields": ["label_display", "description", "status_display", "status_message",
                           "smoke_caption", "is_active", "aliases_display", "registered_by",
                           "created_at"]}),
        (gettext_lazy("Checkpoint"), {"fields": ["checkpoint", "checkpoint_sha256", "checkpoint_bytes"]}),
        (gettext_lazy("Architecture"), {"fields": ["encoder", "decoder", "parameter_count",
                                                   "vocabulary_size"]}),
        (gettext_lazy("Scores"), {"fields": ["scores_table", "evaluations_display"]}),
        (gettext_lazy("Training record"), {"fields": ["training_summary", "training"]}),
        (gettext_lazy("Generation settings"), {"fields": ["config"], "classes": ["collapse"]}),
        (gettext_lazy("Activations"), {"fields": ["activations_display"]}),
    ]
    readonly_fields = [
        "label_display",
        "status_display",
        "status_message",
        "smoke_caption",
        "is_active",
        "aliases_display",
        "registered_by",
        "created_at",
        "checkpoint",
        "checkpoint_sha256",
        "checkpoint_bytes",
        "encoder",
        "decoder",
        "parameter_count",
        "vocabulary_size",
        "scores_table",
        "evaluations_display",
        "training_summary",
        "training",
        "config",
        "activations_display",
    ]

    # Registering

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ModelVersionUploadForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["name", "description", "checkpoint_file"]})]
        return self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        upload = form.cleaned_data["checkpoint_file"]
        try:
            version = registry.model_version_register(
                source=upload,
                name=obj.name,
                description=obj.description,
                user=request.user,
            )
        finally:
            upload.close()
        registry.model_version_validate_later(model_version=version)
        obj.pk = version.pk
        obj.refresh_from_db()

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(
            request,
            _("%(label)s is registered. A worker is validating it; this page shows the result.")
            % {"label": obj.label},
        )
        return HttpResponseRedirect(reverse("admin:captioning_modelversion_change", args=[obj.pk]))

    def has_delete_permission(self, request, obj=None):
        # Deleting the active version would leave new jobs nothing to run on;
        # activate another version first.
        if obj is not None and obj.is_active:
            return False
        return super().has_delete_permission(request, obj)

    # Columns and read-only fields

    @admin.display(description=gettext_lazy("Version"), ordering="name")
    def label_display(self, version: ModelVersion) -> str:
        return version.label

    @admin.display(description=gettext_lazy("Status"), ordering="status")
    def status_display(self, version: ModelVersion) -> str:
        return format_html(
            '<span class="registry-status registry-status-{}">{}</span>',
            version.status,
            version.get_status_display(),
        )

    @admin.display(description=gettext_lazy("Aliases"))
    def aliases_display(self, version: ModelVersion) -> str:
        names = [alias.name for alias in version.aliases.all()]
        if version.is_active:
            names.insert(0, registry.PRODUCTION_ALIAS)
        return ", ".join(names) or "—"

    @admin.display(description=gettext_lazy("Scores"))
    def scores_summary(self, version: ModelVersion) -> str:
        if not version.scores:
            return "—"
        dataset, scores = next(iter(sorted(version.scores.items())))
        parts = [
            f"{label} {scores[key]:.3f}"
            for key, label in LIST_METRICS
            if isinstance(scores.get(key), (int, float))
        ]
        return f"{dataset}: {', '.join(parts)}" if parts else dataset

    @admin.display(description=gettext_lazy("Scores per dataset"))
    def scores_table(self, version: ModelVersion) -> str:
        if not version.scores:
            return _("No scores yet. Use “Evaluate” to score this version on a dataset.")
        metrics = sorted(
            {key for scores in version.scores.values() for key, value in scores.items()
             if isinstance(value, (int, float)) and key != "images"}
        )
        header = format_html_join("", "<th>{}</th>", ((metric,) for metric in metrics))
        rows = format_html_join(
            "",
            "<tr><th>{}</th>{}</tr>",
            (
                (
                    dataset,
                    format_html_join(
                        "",
                        "<td>{}</td>",
                        ((_score_text(scores.get(metric)),) for metric in metrics),
                    ),
                )
                for dataset, scores in sorted(version.scores.items())
            ),
        )
        return format_html(
            '<table class="registry-table"><thead><tr><th>{}</th>{}</tr></thead>'
            "<tbody>{}</tbody></table>",
            _("Dataset"),
            header,
            rows,
        )

    @admin.display(description=gettext_lazy("Evaluations"))
    def evaluations_display(self, version: ModelVersion) -> str:
        runs = list(version.evaluations.order_by("-created_at")[:10])
        if not runs:
            return "—"
        return format_html_join(
            "",
            '<div><a href="{}">{}</a>: {} {}</div>',
            (
                (
                    reverse("admin:captioning_evaluation_change", args=[run.pk]),
                    run.dataset_name,
                    run.get_status_display(),
                    _evaluation_progress(run),
                )
                for run in runs
            ),
        )

    @admin.display(description=gettext_lazy("Summary"))
    def training_summary(self, version: ModelVersion) -> str:
        if not version.training:
            return "—"
        summary = dashboard.training_summary(version.training)

        def shown(value) -> str:
            return "—" if value is None else str(value)

        return format_html(
            "{}: {}<br>{}: {}<br>{}: {}<br>{}: {}",
            _("Data"),
            "; ".join(summary["data"]) or "—",
            _("Epochs"),
            shown(summary["epochs"]),
            _("Seed"),
            shown(summary["seed"]),
            _("Objective"),
            shown(summary["objective"]),
        )

    @admin.display(description=gettext_lazy("History"))
    def activations_display(self, version: ModelVersion) -> str:
        rows = ModelActivation.objects.filter(model_version=version).select_related(
            "previous", "activated_by"
        )[:10]
        if not rows:
            return "—"
        return format_html_join(
            "",
            "<div>{} · {} · {}</div>",
            (
                (
                    row.activated_at.strftime("%Y-%m-%d %H:%M"),
                    row.get_reason_display(),
                    row.activated_by or _("command line"),
                )
                for row in rows
            ),
        )

    # Registry pages

    def get_urls(self):
        urls = [
            path("compare/", self.admin_site.admin_view(self.compare_view),
                 name="captioning_modelversion_compare"),
            path("rollback/", self.admin_site.admin_view(self.rollback_view),
                 name="captioning_modelversion_rollback"),
            path("rollout/", self.admin_site.admin_view(self.rollout_view),
                 name="captioning_modelversion_rollout"),
            path("<int:version_id>/activate/", self.admin_site.admin_view(self.activate_view),
                 name="captioning_modelversion_activate"),
            path("<int:version_id>/alias/", self.admin_site.admin_view(self.alias_view),
                 name="captioning_modelversion_alias"),
            path("<int:version_id>/retire/", self.admin_site.admin_view(self.retire_view),
                 name="captioning_modelversion_retire"),
            path("<int:version_id>/evaluate/", self.admin_site.admin_view(self.evaluate_view),
                 name="captioning_modelversion_evaluate"),
        ]
        return urls + super().get_urls()

    def _registry_page(
        self, request, *, title: str, text: str, button: str, form=None, danger=False, version=None
    ):
        """Render one confirmation or form page of a registry step."""
        if version is not None:
            cancel_url = reverse("admin:captioning_modelversion_change", args=[version.pk])
        else:
            cancel_url = reverse("admin:captioning_modelversion_changelist")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "text": text,
            "form": form,
            "button": button,
            "danger": danger,
            "cancel_url": cancel_url,
        }
        return TemplateResponse(request, "admin/captioning/modelversion/registry_step.html", context)

    def _version_for_change(self, request, version_id: int) -> ModelVersion:
        if not self.has_change_permission(request):
            raise PermissionDenied
        return get_object_or_404(ModelVersion, pk=version_id)

    def _done(self, request, message: str, version: ModelVersion | None = None) -> HttpResponse:
        self.message_user(request, message, messages.SUCCESS)
        if version is not None:
            return HttpResponseRedirect(reverse("admin:captioning_modelversion_change", args=[version.pk]))
        return HttpResponseRedirect(reverse("admin:captioning_modelversion_changelist"))

    def _refused(self, request, error: Exception | str, version: ModelVersion | None = None) -> HttpResponse:
        self.message_user(request, str(error), messages.ERROR)
        if version is not None:
            return HttpResponseRedirect(reverse("admin:captioning_modelversion_change", args=[version.pk]))
        return HttpResponseRedirect(reverse("admin:captioning_modelversion_changelist"))

    def activate_view(self, request: HttpRequest, version_id: int) -> HttpResponse:
        version = self._version_for_change(request, version_id)
        if version.status != ModelVersion.Status.READY:
            return self._refused(
                request,
                _("%(label)s is %(status)s; only a ready version can be activated.")
                % {"label": version.label, "status": version.get_status_display().lower()},
                version,
            )
        active = selectors.model_version_get_active()
        if request.method == "POST":
            try:
                registry.model_version_activate(model_version=version, user=request.user)
            except registry.RegistryError as error:
                return self._refused(request, error, version)
            return self._done(
                request,
                _("%(label)s is now the active version. Workers use it from their next job.")
                % {"label": version.label},
                version,
            )
        return self._registry_page(
            request,
            title=_("Activate %(label)s") % {"label": version.label},
            text=_("Jobs that do not pin a version will use %(label)s instead of %(active)s. "
                   "Roll back from the version list at any time.")
            % {"label": version.label, "active": active.label if active else _("none")},
            button=_("Activate"),
            version=version,
        )

    def rollback_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        active = selectors.model_version_get_active()
        target = selectors.model_version_rollback_target()
        if request.method == "POST":
            try:
                version = registry.model_version_rollback(user=request.user)
            except registry.RegistryError as error:
                return self._refused(request, error)
            return self._done(
                request,
                _("Rolled back: %(label)s is the active version again.") % {"label": version.label},
                version,
            )
        if target is None:
            return self._refused(request, registry.RegistryError(
                _("There is no earlier active version to roll back to.")))
        return self._registry_page(
            request,
            title=_("Roll back to %(label)s") % {"label": target.label},
            text=_("%(target)s becomes the active version again, replacing %(active)s.")
            % {"target": target.label, "active": active.label if active else _("none")},
            button=_("Roll back"),
            danger=True,
        )

    def alias_view(self, request: HttpRequest, version_id: int) -> HttpResponse:
        version = self._version_for_change(request, version_id)
        form = AliasForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            alias = form.cleaned_data["alias"]
            try:
                registry.alias_set(name=alias, model_version=version, user=request.user)
            except registry.RegistryError as error:
                return self._refused(request, error, version)
            return self._done(
                request,
                _("The alias %(alias)s now names %(label)s.") % {"alias": alias, "label": version.label},
                version,
            )
        return self._registry_page(
            request,
            title=_("Set an alias on %(label)s") % {"label": version.label},
            text=_("Requests can pin a version by its alias, and the canary share goes to "
                   "the version named “candidate”."),
            form=form,
            button=_("Set alias"),
            version=version,
        )

    def retire_view(self, request: HttpRequest, version_id: int) -> HttpResponse:
        version = self._version_for_change(request, version_id)
        if version.is_active:
            return self._refused(
                request,
                _("%(label)s is the active version; activate another version before retiring it.")
                % {"label": version.label},
                version,
            )
        if request.method == "POST":
            try:
                registry.model_version_retire(model_version=version)
            except registry.RegistryError as error:
                return self._refused(request, error, version)
            return self._done(request, _("%(label)s is retired.") % {"label": version.label}, version)
        return self._registry_page(
            request,
            title=_("Retire %(label)s") % {"label": version.label},
            text=_("A retired version keeps its jobs and scores but can no longer be activated, "
                   "given an alias or pinned by requests. Its aliases are removed."),
            button=_("Retire"),
            version=version,
            danger=True,
        )

    def evaluate_view(self, request: HttpRequest, version_id: int) -> HttpResponse:
        version = self._version_for_change(request, version_id)
        form = EvaluationForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                evaluation = evaluations.evaluation_create(
                    model_version=version, user=request.user, **form.cleaned_data
                )
            except evaluations.EvaluationError as error:
                form.add_error(None, str(error))
            else:
                evaluations.evaluation_enqueue_later(evaluation=evaluation)
                return self._done(
                    request,
                    _("Evaluation of %(label)s on %(dataset)s is queued; its progress shows below.")
                    % {"label": version.label, "dataset": evaluation.dataset_name},
                    version,
                )
        return self._registry_page(
            request,
            title=_("Evaluate %(label)s") % {"label": version.label},
            text=_("A worker captions the dataset's images and stores BLEU, METEOR, ROUGE-L and "
                   "CIDEr on the version. Datasets are read from %(root)s on the server.")
            % {"root": settings.DATASET_ROOT},
            form=form,
            button=_("Start evaluation"),
            version=version,
        )

    def rollout_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        rollout = registry.rollout_get()
        form = CanaryForm(request.POST or None, initial={"canary_percent": rollout.canary_percent})
        if request.method == "POST" and form.is_valid():
            percent = form.cleaned_data["canary_percent"]
            try:
                registry.canary_set(percent=percent, user=request.user)
            except registry.RegistryError as error:
                form.add_error("canary_percent", str(error))
            else:
                return self._done(request, _("The canary share is now %(percent)d %%.") % {"percent": percent})
        candidate = selectors.model_version_resolve(registry.CANDIDATE_ALIAS)
        return self._registry_page(
            request,
            title=_("Canary share"),
            text=_("The candidate is %(label)s.") % {"label": candidate.label}
            if candidate
            else _("No version has the “candidate” alias yet; set one before sending it traffic."),
            form=form,
            button=_("Save"),
        )

    # List actions

    @admin.action(description=gettext_lazy("Activate the selected model version"))
    def activate_selected(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, _("Select exactly one model version to activate."), messages.ERROR)
            return None
        version = queryset.get()
        return HttpResponseRedirect(reverse("admin:captioning_modelversion_activate", args=[version.pk]))

    @admin.action(description=gettext_lazy("Retire the selected model versions"))
    def retire_selected(self, request, queryset):
        for version in queryset:
            try:
                registry.model_version_retire(model_version=version)
            except registry.RegistryError as error:
                self.message_user(request, str(error), messages.ERROR)
            else:
                self.message_user(request, _("%(label)s is retired.") % {"label": version.label})

    @admin.action(description=gettext_lazy("Compare selected versions"), permissions=["view"])
    def compare(self, request, queryset):
        return admin_views.model_version_compare_redirect(request=request, queryset=queryset)

    def compare_view(self, request):
        return admin_views.model_version_compare(request, model_admin=self)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "active_version": selectors.model_version_get_active(),
            "rollback_target": selectors.model_version_rollback_target(),
            "candidate_version": selectors.model_version_resolve(registry.CANDIDATE_ALIAS),
            "rollout": registry.rollout_get(),
        }
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = self.get_object(request, object_id)
        busy = version is not None and (
            version.status == ModelVersion.Status.VALIDATING
            or version.evaluations.filter(status__in=["queued", "running"]).exists()
        )
        extra_context = {**(extra_context or {}), "refresh_seconds": 3 if busy else None}
        if version is not None:
            extra_context.update(
                dashboard.figures_context(model_version=version, period=request.GET.get("period"))
            )
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "dataset_name", "status", "progress", "created_at", "finished_at"]
    list_filter = ["status", "dataset_name"]
    list_select_related = ["model_version"]
    readonly_fields = [field.name for field in Evaluation._meta.fields] + ["progress"]

    @admin.display(description=gettext_lazy("Progress"))
    def progress(self, evaluation: Evaluation) -> str:
        return _evaluation_progress(evaluation)

    def has_add_permission(self, request):
        # Evaluations start from a model version's "Evaluate" page, which checks the dataset.
        return False


def _score_text(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "—"


def _evaluation_progress(evaluation: Evaluation) -> str:
    if evaluation.status == Evaluation.Status.FAILED:
        return evaluation.error_message
    if evaluation.images_total:
        return f"{evaluation.images_done}/{evaluation.images_total}"
    return ""


@admin.register(CaptionJob)
class CaptionJobAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "caption", "model_version", "format", "created_at"]
    search_fields = ["id", "caption", "original_filename", "sha256"]
    date_hierarchy = "created_at"
    list_select_related = ["model_version"]
    list_filter = ["status", "route", "model_version", "format"]
    # Every field is a fact from the upload or the worker. Changing status, attempts or
    # the run token by hand would break the guarded transitions that run each job once.
    readonly_fields = [field.name for field in CaptionJob._meta.fields]

    def has_add_permission(self, request):
        # Jobs start from an upload, which the admin form cannot check and enqueue.
        return False
