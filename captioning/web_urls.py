"""Routes of the HTML pages, included at the site root."""

from django.urls import path

from captioning import batch_views, views

app_name = "web"

urlpatterns = [
    path("", views.upload, name="upload"),
    path("batches/", batch_views.batch_create, name="batch_create"),
    path("batches/<uuid:batch_id>/", batch_views.batch_detail, name="batch_detail"),
    path("batches/<uuid:batch_id>/images/", batch_views.batch_upload, name="batch_upload"),
    path("batches/<uuid:batch_id>/status/", batch_views.batch_status, name="batch_status"),
    path(
        "batches/<uuid:batch_id>/export.<str:export_format>",
        batch_views.batch_export,
        name="batch_export",
    ),
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<uuid:job_id>/panel/", views.job_panel, name="job_panel"),
    path("jobs/<uuid:job_id>/correct/", batch_views.job_correct, name="job_correct"),
    path("jobs/<uuid:job_id>/delete/", views.job_delete, name="job_delete"),
    path("jobs/<uuid:job_id>/image/", views.job_image, name="job_image"),
    path(
        "jobs/<uuid:job_id>/image/<str:size>.jpg",
        views.job_rendition,
        name="job_rendition",
    ),
]
