from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("devices", views.DeviceViewSet, basename="device")
router.register("users", views.EndUserViewSet, basename="end-user")
router.register("device-groups", views.DeviceGroupViewSet, basename="device-group")

DEVICE = "devices/<device>"

# A device's most frequent request; fleet/urls.py tries it before every other route.
polls = [path(f"{DEVICE}/heartbeat", views.DeviceHeartbeatView.as_view(), name="device-heartbeat")]

urlpatterns = [
    path(f"{DEVICE}/health", views.DeviceHealthView.as_view(), name="device-health"),
    path(f"{DEVICE}/activity", views.DeviceActivityView.as_view(), name="device-activity"),
    path(f"{DEVICE}/users", views.DeviceUsersView.as_view(), name="device-users"),
    path(f"{DEVICE}/frames", views.DeviceFramesView.as_view(), name="device-frames"),
    path(f"{DEVICE}/groups", views.DeviceGroupsOfDeviceView.as_view(), name="device-groups-of-device"),
    path("device-groups/<group>/devices", views.DeviceGroupDevicesView.as_view(), name="device-group-devices"),
    path(f"{DEVICE}/frames/latest", views.DeviceFrameLatestView.as_view(), name="device-frame-latest"),
    *router.urls,
]
