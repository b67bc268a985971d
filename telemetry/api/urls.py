from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("admin/quarantine", views.QuarantineViewSet, basename="quarantine")
router.register("annotation-classes", views.AnnotationClassViewSet, basename="annotation-class")
router.register("annotations", views.AnnotationViewSet, basename="annotation")

urlpatterns = [
    path("readings/batch", views.ReadingsBatchView.as_view(), name="readings-batch"),
    path("readings/aggregated", views.ReadingsAggregatedView.as_view(), name="readings-aggregated"),
    path("readings/stats", views.ReadingsStatsView.as_view(), name="readings-stats"),
    path("readings", views.ReadingsView.as_view(), name="readings"),
    *router.urls,
]
