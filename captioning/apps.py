from django.apps import AppConfig


class CaptioningConfig(AppConfig):
    name = "captioning"
    verbose_name = "Captioning"
    default_auto_field = "django.db.models.BigAutoField"
