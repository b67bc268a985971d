"""Reference views for the benchmarks (mounted only with BENCH_VIEWS=1): the same middleware and
server as the API, without its machinery, so each figure is a ratio against them."""

from django.db.models.fields.json import KeyTextTransform
from django.http import JsonResponse

from devices.models import Device
from fleet.tenancy import rls, selectors

REF_FIELDS = ("id", "device_id", "name", "status", "platform", "os_name", "os_version", "last_heartbeat")


def ping(request):
    """A trivial JSON view: the floor for request handling."""
    return JsonResponse({"status": "ok"})


def devices_values(request):
    """GET /bench/devices?org=<slug>&site=…&limit=…: the device list built from .values()."""
    organization = selectors.organization_by_slug(slug=request.GET["org"])
    rls.activate(org_ids=[organization.id])
    limit = int(request.GET.get("limit", 100))
    devices = Device.objects.filter(organization=organization)
    if "site" in request.GET:
        devices = devices.annotate(site=KeyTextTransform("site", "labels")).filter(site=request.GET["site"])
    rows = list(devices.order_by("-created_at", "id").values(*REF_FIELDS)[:limit])
    return JsonResponse({"devices": rows, "total": devices.count(), "limit": limit, "offset": 0})
