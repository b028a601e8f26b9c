"""URL routes: the REST API under api/v1/, the admin, uploads, and the web pages."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from captioning import admin_views


def serve_media(request, path):
    # MEDIA_ROOT is read per request so that tests can point it elsewhere.
    return serve(request, path, document_root=settings.MEDIA_ROOT)


urlpatterns = [
    # Before admin.site.urls, whose Evaluation admin would otherwise claim the path.
    path(
        "admin/captioning/evaluation/<int:evaluation_id>/sample/<path:name>",
        admin.site.admin_view(admin_views.evaluation_sample),
        name="captioning_evaluation_sample",
    ),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("api/v1/", include("captioning.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("i18n/", include("django.conf.urls.i18n")),
]

if settings.SERVE_MEDIA:
    # Uploads are stored under generated names whose extension matches the detected
    # format, so the content type that `serve` guesses from the name is correct.
    urlpatterns.append(re_path(r"^%s(?P<path>.*)$" % settings.MEDIA_URL.lstrip("/"), serve_media))

urlpatterns.append(path("", include("captioning.web_urls")))

handler404 = "captioning.api.errors.page_not_found"
handler500 = "captioning.api.errors.server_error"
