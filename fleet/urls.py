from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularJSONAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
    SpectacularYAMLAPIView,
)

from deployments.api import urls as deployment_urls
from devices.api import urls as device_urls
from fleet.api import health

api_v1 = [
    # Devices' polls first: resolution tries the routes in order, and these are most of the requests.
    *device_urls.polls,
    *deployment_urls.polls,
    path("", include("fleet.tenancy.api.urls")),
    path("", include("fleet.activity.api.urls")),
    path("", include("provisioning.api.urls")),  # before devices: devices/{device} would capture devices/provision
    path("", include("devices.api.urls")),
    path("", include("deployments.api.urls")),
    path("", include("deployments.api.orchestration_urls")),
    path("", include("apps_catalog.api.urls")),
    path("", include("telemetry.api.urls")),
    path("", include("exports.api.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/v1/", include(api_v1)),
    path("api/schemas/openapi.json", SpectacularJSONAPIView.as_view(), name="schema-json"),
    path("api/schemas/openapi.yaml", SpectacularYAMLAPIView.as_view(), name="schema-yaml"),
    path("api/v3/api-docs", SpectacularJSONAPIView.as_view(), name="schema-api-docs"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema-json"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema-json"), name="redoc"),
]

if settings.BENCH_VIEWS:  # reference views for `make bench` only
    urlpatterns.append(path("bench/", include("bench.urls")))
