from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("exports", views.ExportViewSet, basename="export")

urlpatterns = [
    path("exports/<uuid:id>/download", views.ExportDownloadView.as_view(), name="export-download"),
    *router.urls,
]
