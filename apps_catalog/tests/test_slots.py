import pytest

from apps_catalog.models import CapabilitySlot, ModelVariant
from apps_catalog.tests.factories import (
    AppFactory,
    CapabilitySlotFactory,
    CatalogModelFactory,
    InferenceConfigFactory,
    ModelVariantFactory,
)
from fleet.tenancy import rls


def public_variant(capability, index=0):
    with rls.bypass(reason="test"):
        return ModelVariant.objects.filter(organization__isnull=True, model__capability__key=capability).order_by(
            "name"
        )[index]


def slot_body(**overrides):
    body = {
        "variant_id": str(public_variant("vision").id),
        "serving_policy": {"routing": "local_first", "fallback": True, "max_latency_ms": 50, "min_quality": 0.5},
        "bindings": {"android": str(public_variant("vision", 1).id)},
    }
    body.update(overrides)
    return body


def test_put_creates_then_replaces_wholesale(client_a, app):
    url = f"/api/v1/apps/{app.slug}/capabilities/vision"
    response = client_a.put(url, slot_body(), format="json")
    assert response.status_code == 201, response.json()
    slot = response.json()
    assert slot["capability"] == "vision" and slot["variant"]["id"] == slot_body()["variant_id"]
    assert slot["serving_policy"] == {"routing": "local_first", "fallback": True, "max_latency_ms": 50, "min_quality": 0.5}
    assert set(slot["bindings"]) == {"android"}

    # replace: what is omitted is reset, not merged
    response = client_a.put(url, {"variant_id": None, "serving_policy": {"routing": "cloud_only", "fallback": False}}, format="json")
    assert response.status_code == 200, response.json()
    slot = response.json()
    assert slot["variant"] is None and slot["bindings"] == {}
    assert slot["serving_policy"] == {"routing": "cloud_only", "fallback": False, "max_latency_ms": None, "min_quality": None}
    with rls.bypass(reason="test"):
        assert CapabilitySlot.objects.filter(app=app).count() == 1

    assert client_a.get(url).json()["serving_policy"]["routing"] == "cloud_only"
    listed = client_a.get(f"/api/v1/apps/{app.slug}/capabilities").json()
    assert listed["total"] == 1 and listed["capabilities"][0]["capability"] == "vision"


def test_patch_is_405_by_design(client_a, app):
    CapabilitySlotFactory(organization=app.organization, app=app)
    response = client_a.patch(f"/api/v1/apps/{app.slug}/capabilities/vision", {"bindings": {}}, format="json")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


def test_get_and_delete_slot(client_a, app):
    assert client_a.get(f"/api/v1/apps/{app.slug}/capabilities/vision").status_code == 404  # no slot yet
    assert client_a.get(f"/api/v1/apps/{app.slug}/capabilities/telepathy").status_code == 404
    assert client_a.put(f"/api/v1/apps/{app.slug}/capabilities/telepathy", slot_body(), format="json").status_code == 404
    CapabilitySlotFactory(organization=app.organization, app=app)
    assert client_a.get(f"/api/v1/apps/{app.slug}/capabilities/vision").status_code == 200
    assert client_a.delete(f"/api/v1/apps/{app.slug}/capabilities/vision").status_code == 204
    assert client_a.get(f"/api/v1/apps/{app.slug}/capabilities/vision").status_code == 404
    assert client_a.delete(f"/api/v1/apps/{app.slug}/capabilities/vision").status_code == 404


@pytest.mark.parametrize(
    "policy, field",
    [
        ({}, "serving_policy.routing"),
        ({"routing": "fastest"}, "serving_policy.routing"),
        ({"routing": "local_only", "fallback": True}, "serving_policy.fallback"),
        ({"routing": "private"}, "serving_policy.fallback"),  # fallback defaults to true
        ({"routing": "local_first", "max_latency_ms": 0}, "serving_policy.max_latency_ms"),
        ({"routing": "local_first", "min_quality": 1.1}, "serving_policy.min_quality"),
        ({"routing": "local_first", "fallback": "sometimes"}, "serving_policy.fallback"),
        ({"routing": "local_first", "retries": 3}, "serving_policy.retries"),
    ],
)
def test_serving_policy_is_validated_strictly(client_a, app, policy, field):
    response = client_a.put(f"/api/v1/apps/{app.slug}/capabilities/vision", slot_body(serving_policy=policy), format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"], response.json()


def test_slot_body_validation(client_a, app, other_org):
    url = f"/api/v1/apps/{app.slug}/capabilities/vision"
    missing = client_a.put(url, {"variant_id": None}, format="json")
    assert missing.status_code == 400 and "serving_policy" in missing.json()["fields"]
    unknown = client_a.put(url, slot_body(priority=1), format="json")
    assert unknown.status_code == 400 and "priority" in unknown.json()["fields"]
    bad_platform = client_a.put(url, slot_body(bindings={"symbian": str(public_variant("vision").id)}), format="json")
    assert bad_platform.status_code == 400 and "bindings" in bad_platform.json()["fields"]

    wrong_capability = client_a.put(url, slot_body(variant_id=str(public_variant("chat").id)), format="json")
    assert wrong_capability.status_code == 400 and "variant_id" in wrong_capability.json()["fields"]
    wrong_binding = client_a.put(url, slot_body(bindings={"ios": str(public_variant("chat").id)}), format="json")
    assert wrong_binding.status_code == 400 and "bindings.ios" in wrong_binding.json()["fields"]

    foreign = ModelVariantFactory(model=CatalogModelFactory(organization=other_org))
    response = client_a.put(url, slot_body(variant_id=str(foreign.id)), format="json")
    assert response.status_code == 400 and response.json()["fields"]["variant_id"] == ["No such variant."]


def test_slot_can_use_own_private_variant(client_a, app):
    mine = ModelVariantFactory(model=CatalogModelFactory(organization=app.organization))
    response = client_a.put(f"/api/v1/apps/{app.slug}/capabilities/vision", slot_body(variant_id=str(mine.id)), format="json")
    assert response.status_code == 201 and response.json()["variant"]["id"] == str(mine.id)
    # the model is in use: deleting it is a conflict, not a 500
    assert client_a.delete(f"/api/v1/catalog/models/{mine.model_id}").status_code == 409


def test_slots_list_query_count(client_a, org, app, django_assert_max_num_queries):
    from apps_catalog.models import ModelCapability

    for capability in ModelCapability.objects.all():
        CapabilitySlotFactory(organization=org, app=app, capability=capability)
    client_a.get(f"/api/v1/apps/{app.slug}/capabilities")
    with django_assert_max_num_queries(8) as small:
        client_a.get(f"/api/v1/apps/{app.slug}/capabilities?limit=1")
    with django_assert_max_num_queries(8) as large:
        assert len(client_a.get(f"/api/v1/apps/{app.slug}/capabilities").json()["capabilities"]) == 5
    assert len(small.captured_queries) == len(large.captured_queries)


# --- inference config -------------------------------------------------------------------------------


def test_inference_config_lifecycle(client_a, app):
    url = f"/api/v1/apps/{app.slug}/inference-config"
    assert client_a.get(url).status_code == 404
    body = {
        "cloud_endpoint_url": "https://inference.example.com/v1",
        "default_routing": "local_first",
        "timeout_ms": 5000,
        "max_retries": 3,
        "fallback_order": ["local", "cloud"],
    }
    response = client_a.put(url, body, format="json")
    assert response.status_code == 201, response.json()
    assert {k: response.json()[k] for k in body} == body
    response = client_a.put(url, {"default_routing": "local_only"}, format="json")
    assert response.status_code == 200
    assert response.json()["cloud_endpoint_url"] == "" and response.json()["fallback_order"] == []  # replaced
    assert response.json()["timeout_ms"] == 30000 and response.json()["max_retries"] == 2
    assert client_a.get(url).json()["default_routing"] == "local_only"
    assert client_a.patch(url, {"timeout_ms": 1}, format="json").status_code == 405
    assert client_a.delete(url).status_code == 204
    assert client_a.get(url).status_code == 404
    assert client_a.delete(url).status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "default_routing"),
        ({"default_routing": "sometimes"}, "default_routing"),
        ({"default_routing": "local_first", "cloud_endpoint_url": "http://plain.example.com"}, "cloud_endpoint_url"),
        ({"default_routing": "local_first", "cloud_endpoint_url": "not a url"}, "cloud_endpoint_url"),
        ({"default_routing": "cloud_first"}, "cloud_endpoint_url"),
        ({"default_routing": "local_first", "fallback_order": ["cloud"]}, "cloud_endpoint_url"),
        ({"default_routing": "local_first", "timeout_ms": 10}, "timeout_ms"),
        ({"default_routing": "local_first", "timeout_ms": 10**6}, "timeout_ms"),
        ({"default_routing": "local_first", "max_retries": -1}, "max_retries"),
        ({"default_routing": "local_first", "max_retries": 11}, "max_retries"),
        ({"default_routing": "local_first", "fallback_order": ["local", "local"]}, "fallback_order"),
        ({"default_routing": "local_first", "fallback_order": ["edge"]}, "fallback_order.0"),
        ({"default_routing": "local_only", "cloud_endpoint_url": "https://x.example", "fallback_order": ["cloud"]},
         "fallback_order"),
        ({"default_routing": "cloud_only", "cloud_endpoint_url": "https://x.example", "fallback_order": ["local"]},
         "fallback_order"),
        ({"default_routing": "local_first", "timeout": 5}, "timeout"),
    ],
)
def test_inference_config_is_validated_strictly(client_a, app, body, field):
    response = client_a.put(f"/api/v1/apps/{app.slug}/inference-config", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"], response.json()


def test_other_organizations_app_is_404_everywhere(client_b, org):
    app = AppFactory(organization=org)
    CapabilitySlotFactory(organization=org, app=app)
    InferenceConfigFactory(organization=org, app=app)
    base = f"/api/v1/apps/{app.slug}"
    for method, url in [
        ("get", base),
        ("patch", base),
        ("post", f"{base}/archive"),
        ("get", f"{base}/targets"),
        ("post", f"{base}/targets"),
        ("get", f"{base}/keys"),
        ("post", f"{base}/keys"),
        ("get", f"{base}/capabilities"),
        ("get", f"{base}/capabilities/vision"),
        ("put", f"{base}/capabilities/vision"),
        ("delete", f"{base}/capabilities/vision"),
        ("get", f"{base}/inference-config"),
        ("put", f"{base}/inference-config"),
        ("delete", f"{base}/inference-config"),
        ("get", f"{base}/activity"),
        ("get", f"{base}/first-request"),
    ]:
        response = getattr(client_b, method)(url, {"junk": True}, format="json") if method != "get" else client_b.get(url)
        assert response.status_code == 404, (method, url, response.json())
