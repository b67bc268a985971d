from django.urls import re_path
from rest_framework.routers import SimpleRouter

from apps_catalog.api import views

router = SimpleRouter(trailing_slash=False)
router.register("catalog/capabilities", views.CapabilityViewSet, basename="catalog-capability")
router.register("catalog/models", views.CatalogModelViewSet, basename="catalog-model")
router.register("catalog/variants", views.VariantViewSet, basename="catalog-variant")
router.register("apps", views.AppViewSet, basename="app")

# Nested routes use named regex groups, like the router's, so tools that walk the resolver
# (the organization-isolation test, the schema) see plain <slug>, <id>, <key> parameters.
APP = r"^apps/(?P<slug>[^/]+)"
targets = views.AppTargetViewSet
keys = views.AppKeyViewSet
slots = views.CapabilitySlotViewSet

urlpatterns = [
    *router.urls,
    re_path(rf"{APP}/targets$", targets.as_view({"get": "list", "post": "create"}), name="app-targets"),
    re_path(rf"{APP}/targets/(?P<id>[^/]+)$", targets.as_view({"delete": "destroy"}), name="app-target-detail"),
    re_path(rf"{APP}/keys$", keys.as_view({"get": "list", "post": "create"}), name="app-keys"),
    re_path(rf"{APP}/keys/(?P<id>[^/]+)$", keys.as_view({"delete": "destroy"}), name="app-key-detail"),
    re_path(rf"{APP}/capabilities$", slots.as_view({"get": "list"}), name="app-capabilities"),
    re_path(
        rf"{APP}/capabilities/(?P<key>[^/]+)$",
        slots.as_view({"get": "retrieve", "put": "update", "delete": "destroy"}),
        name="app-capability-detail",
    ),
    re_path(rf"{APP}/inference-config$", views.InferenceConfigView.as_view(), name="app-inference-config"),
    re_path(rf"{APP}/activity$", views.AppActivityView.as_view(), name="app-activity"),
    re_path(rf"{APP}/first-request$", views.FirstRequestView.as_view(), name="app-first-request"),
]
