from django.urls import path

from captioning.api import views

app_name = "api"

urlpatterns = [
    path("captions/", views.CaptionJobListView.as_view(), name="captions"),
    path("captions/batch/", views.CaptionJobBatchView.as_view(), name="caption-batch"),
    # `str`, not `uuid`, so that a malformed id gets the API's JSON 404 instead of Django's page.
    path("captions/<str:job_id>/", views.CaptionJobDetailView.as_view(), name="caption-detail"),
    path("captions/<str:job_id>/image", views.CaptionJobImageView.as_view(), name="caption-image"),
    path("models/", views.ModelVersionListView.as_view(), name="models"),
    path("health/", views.HealthView.as_view(), name="health"),
]
