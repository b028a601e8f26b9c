"""Routes of the HTML pages, included at the site root."""

from django.urls import path

from captioning import views

app_name = "web"

urlpatterns = [
    path("", views.upload, name="upload"),
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<uuid:job_id>/panel/", views.job_panel, name="job_panel"),
    path("jobs/<uuid:job_id>/image/", views.job_image, name="job_image"),
    path(
        "jobs/<uuid:job_id>/image/<str:size>.jpg",
        views.job_rendition,
        name="job_rendition",
    ),
]
