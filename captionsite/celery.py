"""The Celery application that carries caption jobs from the web tier to the workers."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "captionsite.settings")

app = Celery("captionsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
