"""Forms of the HTML pages. The image checks themselves live in captioning.imaging."""

from django import forms
from django.utils.functional import lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from captioning import services
from captioning.api.serializers import MAX_BEAM_SIZE, MAX_NUM_CAPTIONS
from captioning.models import CaptionJob


class MultipleFileInput(forms.ClearableFileInput):
    """A file input that lets the browser send several files under one name."""

    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A list of uploaded files, each passed on unchecked.

    The field only checks that files arrived. An empty or broken file is still handed
    to the caller, because one bad file must produce its own message from
    captioning.imaging without rejecting the good files sent with it.
    """

    widget = MultipleFileInput

    def __init__(self, *, max_files: int, **kwargs) -> None:
        self.max_files = max_files
        kwargs.setdefault("allow_empty_file", True)
        super().__init__(**kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, (list, tuple)) else [data]
        files = [file for file in files if file]
        if not files:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        if len(files) > self.max_files:
            raise forms.ValidationError(
                ngettext_lazy(
                    "You chose %(count)d files, and at most %(max)d can be uploaded at once. "
                    "Upload them in smaller groups.",
                    "You chose %(count)d files, and at most %(max)d can be uploaded at once. "
                    "Upload them in smaller groups.",
                    "max",
                ),
                code="too_many_files",
                params={"count": len(files), "max": self.max_files},
            )
        return files


class CaptionOptionsForm(forms.Form):
    """The generation options under the upload page's "Advanced" fold; blank means default."""

    beam_size = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_BEAM_SIZE,
        label=_("Beam size"),
        help_text=lazy(
            lambda: gettext(
                "Candidate captions the model keeps while writing, 1 to %(max)d. "
                "Leave blank for the model's default."
            )
            % {"max": MAX_BEAM_SIZE},
            str,
        )(),
    )
    num_captions = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_NUM_CAPTIONS,
        label=_("Number of captions"),
        help_text=lazy(
            lambda: gettext("Captions to keep per photo, best first, 1 to %(max)d. Leave blank for the default.")
            % {"max": MAX_NUM_CAPTIONS},
            str,
        )(),
    )

    def clean(self):
        cleaned = super().clean()
        beam_size, num_captions = cleaned.get("beam_size"), cleaned.get("num_captions")
        if beam_size and num_captions and num_captions > beam_size:
            # The search keeps only beam_size candidates, so it cannot return more.
            self.add_error(
                "num_captions",
                _("A beam size of %(beam)d keeps at most %(beam)d captions. Ask for %(beam)d or "
                  "fewer, or raise the beam size to %(count)d.")
                % {"beam": beam_size, "count": num_captions},
            )
        return cleaned

    def job_options(self) -> dict:
        """Return the valid options as keyword arguments of services.job_create."""
        return {
            "beam_size": self.cleaned_data.get("beam_size"),
            "num_captions": self.cleaned_data.get("num_captions"),
        }


class UploadForm(CaptionOptionsForm):
    """The upload page: one or more photos in the multipart field `images`, and options."""

    max_files = services.BATCH_MAX_JOBS

    images = MultipleFileField(
        max_files=max_files,
        label=_("Photos"),
        error_messages={"required": _("Choose at least one photo to upload.")},
        widget=MultipleFileInput(
            attrs={"class": "file-input", "aria-describedby": "upload-limits"}
        ),
    )

    field_order = ["images", "beam_size", "num_captions"]

    def clean(self):
        cleaned = super().clean()
        # Screen readers announce the error list with the file input only when the
        # input names it, next to the limits it already names.
        if "images" in self.errors:
            widget = self.fields["images"].widget
            widget.attrs["aria-describedby"] = f"upload-limits {self['images'].auto_id}_error"
        return cleaned


class CorrectionForm(forms.Form):
    """A person's wording of a caption; blank returns to the model's caption."""

    caption = forms.CharField(
        required=False,
        max_length=services.CORRECTION_MAX_CHARS,
        strip=True,
        label=_("Corrected caption"),
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class JobFilterForm(forms.Form):
    """Search and filters of the history page; every field is optional."""

    q = forms.CharField(required=False, max_length=200, label=_("Search captions"))
    status = forms.ChoiceField(required=False, label=_("Job status"))
    model = forms.ChoiceField(required=False, label=_("Model version"))
    created_from = forms.DateField(
        required=False, label=_("From"), widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        required=False, label=_("To"), widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args, model_labels: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", _("Any status"))] + list(CaptionJob.Status.choices)
        self.fields["model"].choices = [("", _("Any model version"))] + [(label, label) for label in model_labels]

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("created_from"), cleaned.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", _("The end date is before the start date. Swap them."))
        return cleaned
