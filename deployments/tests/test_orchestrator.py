import pytest
from django.apps import apps as django_apps

from apps_catalog.models import CapabilitySlot, ModelCapability
from apps_catalog.tests.factories import (
    AppFactory,
    AppTargetFactory,
    CapabilitySlotFactory,
    CatalogModelFactory,
    ModelCapabilityFactory,
    ModelVariantFactory,
)
from deployments import orchestrator
from deployments.models import (
    CapabilityProfile,
    Deployment,
    DeploymentStatus,
    DeviceAssignment,
)
from deployments.tests.factories import DeploymentFactory, DeviceAssignmentFactory
from devices.tests.factories import DeviceFactory
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db

GB = 1024**3
FLAGSHIP = {"platform": "ios", "capabilities": {"npu": True}, "hardware": {"ram": 8 * GB, "cpu_cores": 6}}
MIDRANGE = {"platform": "android", "capabilities": {}, "hardware": {"ram": 4 * GB, "cpu_cores": 8}}
LOW_END = {"platform": "android", "capabilities": {}, "hardware": {"ram": 1 * GB, "cpu_cores": 4}}


def app_with_fleet(org, *, flagship=0, midrange=0, low_end=0, slug=None):
    app = AppFactory(organization=org, **({"slug": slug} if slug else {}))
    target = AppTargetFactory(organization=org, app=app, platform="android")
    devices = []
    for kind, count in ((FLAGSHIP, flagship), (MIDRANGE, midrange), (LOW_END, low_end)):
        devices += [app_device(org, app, target, **kind) for _ in range(count)]
    return app, devices


def app_device(org, app, target, **fields):
    """A device of `app` (linked to its target, as registration through the app's SDK does)."""
    return DeviceFactory(organization=org, **orchestrator.app_device_fields(app=app, target=target), **fields)


def crafted_capability(org, variants):
    """A capability of its own whose only variants are the organization's private ones."""
    capability = ModelCapabilityFactory()
    model = CatalogModelFactory(organization=org, capability=capability)
    made = [ModelVariantFactory(organization=org, model=model, **fields) for fields in variants]
    return capability, made


ANDROID_GOOD = {"platforms": ["android"], "format": "tflite", "min_ram_mb": 2048, "quality_score": 0.9,
                "size_bytes": 5 * 1024 * 1024, "latency_ms": {"phone_midrange": 20, "phone_flagship": 10}}
IOS_ONLY = {"platforms": ["ios"], "format": "coreml", "min_ram_mb": 512, "quality_score": 0.6,
            "size_bytes": 5 * 1024 * 1024, "latency_ms": {"phone_flagship": 8}}
EVERYWHERE_WEAK = {"platforms": ["android", "ios"], "format": "executorch", "min_ram_mb": 512, "quality_score": 0.4,
                   "size_bytes": 50 * 1024 * 1024, "latency_ms": {"phone_flagship": 30, "phone_midrange": 60}}


def refresh(org):
    with rls.bypass(reason="test setup"):
        return orchestrator.profiles_refresh(organization=org)


def row_counts():
    counts = {}
    for label in ("deployments", "apps_catalog", "activity"):
        for model in django_apps.get_app_config(label).get_models():
            with rls.bypass(reason="test row counts"):
                counts[model._meta.label] = model.objects.count()
    return counts


# --- profiles ------------------------------------------------------------------------------------------------


def test_profiles_refresh_scores_every_visible_variant(org, other_org):
    app, devices = app_with_fleet(org, flagship=1, low_end=1)
    capability, (private,) = crafted_capability(org, [ANDROID_GOOD])
    crafted_capability(other_org, [ANDROID_GOOD])  # not visible to org
    assert refresh(org) == 2
    with rls.bypass(reason="test"):
        profiles = {p.device_id: p for p in CapabilityProfile.objects.filter(organization=org)}
        public_variants = django_apps.get_model("apps_catalog", "ModelVariant").objects.filter(organization__isnull=True).count()
    flagship, low_end = profiles[devices[0].id], profiles[devices[1].id]
    assert flagship.device_class == "phone_flagship" and low_end.device_class == "phone_low_end"
    assert len(flagship.scores) == public_variants + 1
    assert flagship.scores[str(private.id)]["compatible"] is False
    assert flagship.scores[str(private.id)]["reasons"][0].startswith("platform")
    assert low_end.scores[str(private.id)]["reasons"] == ["ram: needs 2048 MB, device has 1024 MB"]
    # Upsert: a second run rewrites the same rows.
    assert refresh(org) == 2
    with rls.bypass(reason="test"):
        assert CapabilityProfile.objects.filter(organization=org).count() == 2


def test_profile_endpoints_and_filters(client_a, org, django_assert_max_num_queries):
    app, devices = app_with_fleet(org, flagship=2, midrange=3)
    capability, (android,) = crafted_capability(org, [ANDROID_GOOD])
    refresh(org)
    response = client_a.get(f"/api/v1/devices/{devices[0].device_id}/capability-profile")
    assert response.status_code == 200
    assert response.json()["device_class"] == "phone_flagship" and response.json()["device"]["id"] == str(devices[0].id)
    unprofiled = DeviceFactory(organization=org, **MIDRANGE)
    computed = client_a.get(f"/api/v1/devices/{unprofiled.id}/capability-profile").json()
    assert computed["device_class"] == "phone_midrange" and computed["scores"][str(android.id)]["compatible"] is True

    listing = client_a.get("/api/v1/capability-profiles", {"device_class": "phone_midrange"}).json()
    assert listing["total"] == 3
    compatible = client_a.get("/api/v1/capability-profiles", {"variant": str(android.id), "compatible": "true"}).json()
    assert {p["device"]["id"] for p in compatible["capability_profiles"]} == {str(d.id) for d in devices[2:]}
    incompatible = client_a.get("/api/v1/capability-profiles", {"variant": str(android.id), "compatible": "false"}).json()
    assert incompatible["total"] == 2
    bad = client_a.get("/api/v1/capability-profiles", {"compatible": "true"})
    assert bad.status_code == 400 and "compatible" in bad.json()["fields"]
    with django_assert_max_num_queries(8):
        client_a.get("/api/v1/capability-profiles", {"limit": 1})
    with django_assert_max_num_queries(8):
        client_a.get("/api/v1/capability-profiles", {"limit": 1000})


# --- preview --------------------------------------------------------------------------------------------------


def test_preview_has_no_side_effects_and_explains_its_choice(client_a, org):
    app, _ = app_with_fleet(org, flagship=1, midrange=3)
    capability, (android, ios, weak) = crafted_capability(org, [ANDROID_GOOD, IOS_ONLY, EVERYWHERE_WEAK])
    refresh(org)
    before = row_counts()
    response = client_a.post(f"/api/v1/apps/{app.slug}/capabilities/{capability.key}/preview",
                             {"environment": "production"}, format="json")
    assert response.status_code == 200, response.content
    assert row_counts() == before
    body = response.json()
    assert body["recommended"]["variant_id"] == str(android.id) and "3 of 4 devices" in body["recommended"]["reason"]
    assert body["fleet"] == {"devices": 4, "profiled": 4, "by_device_class": [
        {"device_class": "phone_flagship", "devices": 1}, {"device_class": "phone_midrange", "devices": 3}]}
    by_id = {v["variant_id"]: v for v in body["variants"]}
    assert by_id[str(weak.id)]["compatible_devices"] == 4 and by_id[str(ios.id)]["compatible_devices"] == 1
    assert by_id[str(android.id)]["expected_latency_ms"] == 20.0
    # The flagship (iOS) cannot run the Android build: a per-class binding covers it.
    assert body["bindings"] == [{"device_class": "phone_flagship", "variant_id": str(ios.id), "devices": 1,
                                 "compatible_devices": 1}]
    assert body["assignments"]["total"] == 4
    assert {(v["variant_id"], v["devices"]) for v in body["assignments"]["by_variant"]} == {(str(android.id), 3), (str(ios.id), 1)}
    assert body["uncovered"]["devices"] == 0


def test_preview_classifies_unprofiled_devices_and_reports_uncovered_ones(client_a, org):
    app, _ = app_with_fleet(org, midrange=2, low_end=1)  # no stored profiles
    capability, (android,) = crafted_capability(org, [ANDROID_GOOD])
    body = client_a.post(f"/api/v1/apps/{app.slug}/capabilities/{capability.key}/preview", {}, format="json").json()
    assert body["fleet"]["profiled"] == 0 and body["fleet"]["devices"] == 3
    assert body["recommended"]["variant_id"] == str(android.id)
    assert body["uncovered"] == {"devices": 1, "by_device_class": [{"device_class": "phone_low_end", "devices": 1}]}


def test_unknown_capability_or_app_is_404_and_bad_environment_400(client_a, org):
    app, _ = app_with_fleet(org, midrange=1)
    assert client_a.post(f"/api/v1/apps/{app.slug}/capabilities/nope/preview", {}, format="json").status_code == 404
    assert client_a.post("/api/v1/apps/nope/capabilities/vision/preview", {}, format="json").status_code == 404
    bad = client_a.post(f"/api/v1/apps/{app.slug}/capabilities/vision/enable", {"environment": "moon"}, format="json")
    assert bad.status_code == 400 and "environment" in bad.json()["fields"]


# --- enable -----------------------------------------------------------------------------------------------------


def test_enable_sets_the_slot_and_starts_a_deployment_then_is_idempotent(client_a, org):
    app, devices = app_with_fleet(org, midrange=5)
    DeviceFactory(organization=org, **MIDRANGE)  # not the app's
    capability, (android, weak) = crafted_capability(org, [ANDROID_GOOD, EVERYWHERE_WEAK])
    refresh(org)
    url = f"/api/v1/apps/{app.slug}/capabilities/{capability.key}/enable"
    response = client_a.post(url, {"environment": "production"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["created"] is True and body["deployment"]["variant_id"] == str(android.id)
    assert body["deployment"]["status"] == "completed" and body["deployment"]["targeted"] == 5
    assert body["slot"]["variant_id"] == str(android.id)
    with rls.bypass(reason="test"):
        slot = CapabilitySlot.objects.get(app=app, capability=capability)
        assert slot.variant_id == android.id
        deployment = Deployment.objects.get(pk=body["deployment"]["id"])
        assert deployment.app_id == app.id and deployment.environment == "production"
        assert set(DeviceAssignment.objects.filter(deployment=deployment, in_rollout=True).values_list("device_id", flat=True)) == {d.id for d in devices}

    again = client_a.post(url, {"environment": "production"}, format="json")
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["deployment"]["id"] == body["deployment"]["id"]
    with rls.bypass(reason="test"):
        assert Deployment.objects.filter(app=app, capability=capability).count() == 1
    staging = client_a.post(url, {"environment": "staging"}, format="json")
    assert staging.status_code == 201 and staging.json()["deployment"]["environment"] == "staging"


def test_enable_is_409_while_a_deployment_is_running(client_a, org):
    app, _ = app_with_fleet(org, midrange=2)
    vision = ModelCapability.objects.get(key="vision")
    running = DeploymentFactory(organization=org, app=app, capability=vision, status=DeploymentStatus.ROLLING_OUT)
    response = client_a.post(f"/api/v1/apps/{app.slug}/capabilities/vision/enable", {"environment": "production"}, format="json")
    assert response.status_code == 409 and str(running.id) in response.json()["message"]


def test_enable_without_any_compatible_variant_is_409(client_a, org):
    app, _ = app_with_fleet(org, low_end=2)
    capability, _ = crafted_capability(org, [ANDROID_GOOD])  # needs 2048 MB
    response = client_a.post(f"/api/v1/apps/{app.slug}/capabilities/{capability.key}/enable", {}, format="json")
    assert response.status_code == 409


def test_enable_for_an_app_without_targets_is_409(client_a, org):
    app = AppFactory(organization=org)
    response = client_a.post(f"/api/v1/apps/{app.slug}/capabilities/vision/enable", {}, format="json")
    assert response.status_code == 409 and "target" in response.json()["message"]


def test_viewer_may_preview_but_not_enable(org, make_client):
    app, _ = app_with_fleet(org, midrange=1)
    viewer = make_client(org, role="viewer")
    assert viewer.post(f"/api/v1/apps/{app.slug}/capabilities/vision/preview", {}, format="json").status_code == 200
    assert viewer.post(f"/api/v1/apps/{app.slug}/capabilities/vision/enable", {}, format="json").status_code == 403


# --- check-optimization / optimize ------------------------------------------------------------------------------------


def enabled_with_weak_variant(client_a, org, devices=10):
    app, fleet = app_with_fleet(org, midrange=devices)
    capability, (weak,) = crafted_capability(org, [EVERYWHERE_WEAK])
    refresh(org)
    response = client_a.post(f"/api/v1/apps/{app.slug}/capabilities/{capability.key}/enable", {}, format="json")
    assert response.status_code == 201, response.content
    return app, capability, weak, fleet


def test_check_optimization_picks_the_better_variant_without_writing(client_a, org):
    app, capability, weak, _ = enabled_with_weak_variant(client_a, org)
    url = f"/api/v1/apps/{app.slug}/capabilities/{capability.key}/check-optimization"
    nothing = client_a.post(url, {}, format="json").json()
    assert nothing["better"] is False and nothing["current"]["variant_id"] == str(weak.id)
    assert nothing["devices_affected"] == 0

    model = CatalogModelFactory(organization=org, capability=capability)
    better = ModelVariantFactory(organization=org, model=model, **ANDROID_GOOD)
    refresh(org)
    before = row_counts()
    body = client_a.post(url, {"environment": "production"}, format="json").json()
    assert row_counts() == before
    assert body["better"] is True and body["recommended"]["variant_id"] == str(better.id)
    assert body["devices_affected"] == 10
    improvement = body["expected_improvement"]
    assert improvement["score"] > 0 and improvement["latency_ms"] == 40.0 and improvement["quality"] == 0.5


def test_optimize_starts_a_staged_rollout_and_refuses_a_second(client_a, org):
    app, capability, weak, _ = enabled_with_weak_variant(client_a, org, devices=20)
    url = f"/api/v1/apps/{app.slug}/capabilities/{capability.key}/optimize"
    nothing = client_a.post(url, {}, format="json")
    assert nothing.status_code == 409 and "better" in nothing.json()["message"]

    model = CatalogModelFactory(organization=org, capability=capability)
    better = ModelVariantFactory(organization=org, model=model, **ANDROID_GOOD)
    refresh(org)
    response = client_a.post(url, {"environment": "production", "stages": [5, 25, 100]}, format="json")
    assert response.status_code == 201, response.content
    deployment = response.json()["deployment"]
    assert deployment["status"] == "rolling_out" and deployment["variant_id"] == str(better.id)
    assert deployment["strategy"]["stages"] == [5, 25, 100] and deployment["stage_percent"] == 5
    assert deployment["strategy"]["health_gates"]["max_routing_error_rate"] == 0.05
    assert deployment["targeted"] == 20
    again = client_a.post(url, {}, format="json")
    assert again.status_code == 409
    enable = client_a.post(f"/api/v1/apps/{app.slug}/capabilities/{capability.key}/enable", {}, format="json")
    assert enable.status_code == 409


def test_optimize_before_enable_is_409(client_a, org):
    app, _ = app_with_fleet(org, midrange=2)
    capability, _ = crafted_capability(org, [ANDROID_GOOD])
    assert client_a.post(f"/api/v1/apps/{app.slug}/capabilities/{capability.key}/optimize", {}, format="json").status_code == 409


def test_bad_stages_are_400(client_a, org):
    app, _ = app_with_fleet(org, midrange=1)
    response = client_a.post(f"/api/v1/apps/{app.slug}/capabilities/vision/optimize", {"stages": [50, 10]}, format="json")
    assert response.status_code == 400 and "stages" in response.json()["fields"]


# --- slot coverage health ---------------------------------------------------------------------------------------------


def covered(org, app, devices, capability, active):
    deployment = DeploymentFactory(organization=org, app=app, capability=capability, status=DeploymentStatus.COMPLETED)
    for i, device in enumerate(devices):
        DeviceAssignmentFactory(organization=org, deployment=deployment, device=device,
                                status="active" if i < active else "pending")
    return deployment


@pytest.mark.parametrize(("active", "status"), [(20, "healthy"), (19, "healthy"), (18, "degraded"), (0, "degraded")])
def test_coverage_numbers(client_a, org, active, status, django_assert_max_num_queries):
    app, devices = app_with_fleet(org, midrange=20)
    vision = ModelCapability.objects.get(key="vision")
    CapabilitySlotFactory(organization=org, app=app, capability=vision)
    covered(org, app, devices, vision, active)
    with django_assert_max_num_queries(10):
        body = client_a.get(f"/api/v1/apps/{app.slug}/health").json()
    assert body["status"] == status
    assert body["slots"] == [{
        "capability": "vision",
        "variant_id": body["slots"][0]["variant_id"],
        "target_devices": 20,
        "active_devices": active,
        "coverage": active / 20,
        "status": status,
    }]


def test_health_statuses_without_targets_or_configuration(client_a, org):
    app = AppFactory(organization=org)
    assert client_a.get(f"/api/v1/apps/{app.slug}/health").json() == {"app": app.slug, "status": "unconfigured", "slots": []}
    CapabilitySlotFactory(organization=org, app=app, capability=ModelCapability.objects.get(key="vision"))
    CapabilitySlotFactory(organization=org, app=app, capability=ModelCapability.objects.get(key="chat"), variant=None)
    body = client_a.get(f"/api/v1/apps/{app.slug}/health").json()
    assert [(s["capability"], s["status"]) for s in body["slots"]] == [("chat", "unconfigured"), ("vision", "no_targets")]
    assert body["status"] == "unconfigured"


def test_enable_then_devices_report_active_makes_the_app_healthy(client_a, org):
    app, capability, weak, fleet = enabled_with_weak_variant(client_a, org, devices=4)
    assert client_a.get(f"/api/v1/apps/{app.slug}/health").json()["status"] == "degraded"
    with rls.bypass(reason="test"):
        DeviceAssignment.objects.filter(device__in=fleet).update(status="active")
    body = client_a.get(f"/api/v1/apps/{app.slug}/health").json()
    assert body["status"] == "healthy" and body["slots"][0]["variant_id"] == str(weak.id)


# --- recompute tasks ----------------------------------------------------------------------------------------------------


def test_profiles_recompute_task_restores_the_organization(org):
    from deployments import tasks

    app, devices = app_with_fleet(org, midrange=3)
    assert tasks.profiles_recompute(str(org.id)) == 3
    assert tasks.profiles_recompute(str(org.id), [str(devices[0].id)]) == 1
    with rls.bypass(reason="test"):
        assert CapabilityProfile.objects.filter(organization=org).count() == 3


def test_catalog_changes_enqueue_one_recompute_per_organization_per_transaction(org, django_capture_on_commit_callbacks):
    from django.db import transaction

    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        crafted_capability(org, [ANDROID_GOOD, IOS_ONLY, EVERYWHERE_WEAK])
    scheduled = [getattr(c, "fleet_catalog_org", None) for c in callbacks]
    assert scheduled == [str(org.id)]


def test_slot_coverage_for_many_apps_in_constant_queries(org, org_context, django_assert_max_num_queries):
    org_context(org)
    vision = ModelCapability.objects.get(key="vision")
    apps = []
    for active in (4, 2, 0):
        app, devices = app_with_fleet(org, midrange=4)
        CapabilitySlotFactory(organization=org, app=app, capability=vision)
        covered(org, app, devices, vision, active)
        apps.append(app)
    apps.append(AppFactory(organization=org))
    with django_assert_max_num_queries(4):
        coverage = orchestrator.slot_coverage(apps=apps, organization=org)
    assert [coverage[a.id]["status"] for a in apps] == ["healthy", "degraded", "degraded", "unconfigured"]
    assert [coverage[a.id]["slots"][0]["active_devices"] for a in apps[:3]] == [4, 2, 0]
