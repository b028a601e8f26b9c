from django.urls import path

from captioning.api import views

app_name = "api"

urlpatterns = [
    path("captions/", views.CaptionJobCreateView.as_view(), name="captions"),
    path("captions/<uuid:job_id>/", views.CaptionJobDetailView.as_view(), name="caption-detail"),
]
