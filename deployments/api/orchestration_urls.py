from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from . import orchestration_views as views

router = SimpleRouter(trailing_slash=False)
router.register("training-rounds", views.TrainingRoundViewSet, basename="training-round")

# Named regex groups like apps_catalog's nested routes, so the isolation walker sees <slug> and <key>.
APP = r"^apps/(?P<slug>[^/]+)"
CAPABILITY = rf"{APP}/capabilities/(?P<key>[^/]+)"

urlpatterns = [
    re_path(rf"{CAPABILITY}/preview$", views.CapabilityPreviewView.as_view(), name="app-capability-preview"),
    re_path(rf"{CAPABILITY}/enable$", views.CapabilityEnableView.as_view(), name="app-capability-enable"),
    re_path(
        rf"{CAPABILITY}/check-optimization$",
        views.CapabilityCheckOptimizationView.as_view(),
        name="app-capability-check-optimization",
    ),
    re_path(rf"{CAPABILITY}/optimize$", views.CapabilityOptimizeView.as_view(), name="app-capability-optimize"),
    re_path(rf"{APP}/health$", views.AppHealthView.as_view(), name="app-health"),
    re_path(rf"{APP}/routing/decisions$", views.AppRoutingDecisionsView.as_view(), name="app-routing-decisions"),
    re_path(rf"{APP}/routing/stats$", views.AppRoutingStatsView.as_view(), name="app-routing-stats"),
    path("devices/<str:device>/capability-profile", views.DeviceCapabilityProfileView.as_view(),
         name="device-capability-profile"),
    path("capability-profiles", views.CapabilityProfileListView.as_view(), name="capability-profiles"),
    path("routing/events", views.RoutingEventsView.as_view(), name="routing-events"),
    path("routing/decisions", views.RoutingDecisionsView.as_view(), name="routing-decisions"),
    path("routing/stats", views.RoutingStatsView.as_view(), name="routing-stats"),
    *router.urls,
]
