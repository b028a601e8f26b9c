from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CaptioningConfig(AppConfig):
    name = "captioning"
    verbose_name = _("Captioning")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Registers the system checks.
        from captioning import checks  # noqa: F401
