"""Forms of the HTML pages. The image checks themselves live in captioning.imaging."""

from django import forms
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy


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


class UploadForm(forms.Form):
    """The upload page: one or more photos in the multipart field `images`."""

    # Each file is checked and stored on its own, so a request with many files keeps
    # the server busy for a while; 20 matches a typical album upload.
    max_files = 20

    images = MultipleFileField(
        max_files=max_files,
        label=_("Photos"),
        error_messages={"required": _("Choose at least one photo to upload.")},
        widget=MultipleFileInput(
            attrs={"class": "file-input", "aria-describedby": "upload-limits"}
        ),
    )
