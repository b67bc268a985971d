from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("deployments", views.DeploymentViewSet, basename="deployment")

DEVICE = "devices/<str:device>"

# A device's most frequent requests; fleet/urls.py tries them before every other route.
polls = [
    path(f"{DEVICE}/desired-state", views.DesiredStateView.as_view(), name="device-desired-state"),
    path(f"{DEVICE}/sync", views.SyncView.as_view(), name="device-sync"),
]

urlpatterns = [
    path("deployments/<uuid:id>/devices", views.DeploymentDevicesView.as_view(), name="deployment-devices"),
    path("apps/<slug:slug>/deployments", views.AppDeploymentsView.as_view(), name="app-deployments"),
    path(f"{DEVICE}/observed-state", views.ObservedStateView.as_view(), name="device-observed-state"),
    path(f"{DEVICE}/commands", views.DeviceCommandsView.as_view(), name="device-commands"),
    *router.urls,
]
