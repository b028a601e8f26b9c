"""Forms of the model registry's admin pages."""

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from captioning.models import Evaluation, ModelVersion, alias_name_validator


class ModelVersionUploadForm(forms.ModelForm):
    """Register a checkpoint file as the next version of a name."""

    checkpoint_file = forms.FileField(
        label=_("Checkpoint file"),
        help_text=_("A .safetensors checkpoint written by ml.train. Pickle files are rejected."),
    )

    class Meta:
        model = ModelVersion
        fields = ["name", "description"]
        help_texts = {
            "name": _("Versions of one name are numbered 1, 2, 3 in the order they are registered."),
        }

    def clean_checkpoint_file(self):
        upload = self.cleaned_data["checkpoint_file"]
        if upload.size > settings.MAX_CHECKPOINT_BYTES:
            raise forms.ValidationError(
                _("The file is %(size)s; checkpoints may be at most %(limit)s.")
                % {
                    "size": filesizeformat(upload.size),
                    "limit": filesizeformat(settings.MAX_CHECKPOINT_BYTES),
                }
            )
        return upload

    def validate_unique(self):
        # The number is assigned when the version is registered, so (name, number)
        # cannot clash here.
        pass


class AliasForm(forms.Form):
    alias = forms.CharField(
        label=_("Alias"),
        max_length=50,
        initial="candidate",
        validators=[alias_name_validator],
        help_text=_(
            "The alias moves here from any other version. \"candidate\" receives the canary share."
        ),
    )


class CanaryForm(forms.Form):
    canary_percent = forms.IntegerField(
        label=_("Canary share (%)"),
        min_value=0,
        max_value=100,
        help_text=_(
            "Percentage of jobs that do not pin a version which go to the version with the "
            "\"candidate\" alias. 0 sends every such job to the active version."
        ),
    )


class EvaluationForm(forms.ModelForm):
    class Meta:
        model = Evaluation
        fields = [
            "dataset_name",
            "format",
            "annotations",
            "images_dir",
            "limit",
            "select_every",
            "select_offset",
        ]
        help_texts = {
            "dataset_name": _("The key of the scores on the version, such as flickr8k-test."),
            "annotations": _("The COCO JSON or CSV file, relative to the dataset folder on the server."),
            "images_dir": _("The folder of the images, relative to the dataset folder on the server."),
            "limit": _("Score at most this many images; leave empty for all."),
            "select_every": _("Score only every N-th image in name order; 0 scores all."),
            "select_offset": _("Which image of each group of N is scored, from 0."),
        }
