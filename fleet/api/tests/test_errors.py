"""The one error contract for everything the API and Django can answer under /api/."""

from importlib import import_module

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import path
from rest_framework.test import APIClient

from fleet.api.views import OrgScopedAPIView, OrgScopedViewSet
from fleet.errors import Conflict

pytestmark = pytest.mark.django_db


class Boom(OrgScopedAPIView):
    def get(self, request):
        raise RuntimeError("secret detail: password=hunter2 SELECT * FROM x")


urlpatterns = [path("api/v1/test-boom", Boom.as_view()), *import_module(settings.ROOT_URLCONF).urlpatterns]


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message", "fields"}
    assert body["error"] == code
    return body


def test_unknown_route_under_api_is_404_json(client_a):
    assert_error(client_a.get("/api/v1/no-such-thing"), 404, "not_found")
    assert_error(APIClient().get("/api/nope"), 404, "not_found")


def test_method_not_allowed(client_a):
    response = client_a.put("/api/v1/organization", {}, format="json")
    assert_error(response, 405, "method_not_allowed")


def test_malformed_json_is_400(client_a):
    response = client_a.post("/api/v1/api-keys", "{not json", content_type="application/json")
    assert_error(response, 400, "bad_request")


def test_unsupported_media_type(client_a):
    response = client_a.post("/api/v1/api-keys", "name=x", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_oversized_body_is_413(client_a):
    response = client_a.post("/api/v1/api-keys", {"name": "x" * 2000}, format="json")
    assert_error(response, 413, "payload_too_large")


@override_settings(ROOT_URLCONF=__name__)
def test_unexpected_error_is_500_without_internals(client_a):
    client_a.raise_request_exception = False
    response = client_a.get("/api/v1/test-boom")
    body = assert_error(response, 500, "internal_error")
    assert "hunter2" not in response.content.decode() and "SELECT" not in response.content.decode()
    assert body["message"] == "Internal server error."


@override_settings(RATE_LIMITS={"api_key": "3/60", "user": "3/60", "device": "3/60", "anonymous": "3/60"})
def test_rate_limit_is_429_with_retry_after(client_a, rate_window):
    statuses = [client_a.get("/api/v1/organization").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    response = client_a.get("/api/v1/organization")
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= 60


def test_validation_errors_name_nested_fields():
    from fleet.api.errors import flatten

    detail = {"metrics": {"battery_level": ["Too high."]}, "readings": [{}, {"value": ["Bad."]}], "non_field_errors": ["X"]}
    assert flatten(detail) == {
        "metrics.battery_level": ["Too high."],
        "readings.1.value": ["Bad."],
        "non_field_errors": ["X"],
    }


def test_scoping_hooks_cannot_be_overridden():
    for sealed in ("get_queryset", "get_object", "initial"):
        with pytest.raises(TypeError):
            type("Sneaky", (OrgScopedViewSet,), {sealed: lambda self: None})


def test_health_endpoints():
    client = APIClient()
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}


@override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
def test_readyz_is_503_when_the_broker_is_down():
    response = APIClient().get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["broker"].startswith("error")


class WritesThenFails(OrgScopedAPIView):
    def post(self, request):
        from fleet.tenancy.services import api_key_create

        api_key_create(organization=self.organization, name="half-done")
        raise Conflict("Something conflicted after a write.")


urlpatterns.insert(0, path("api/v1/test-writes-then-fails", WritesThenFails.as_view()))


@override_settings(ROOT_URLCONF=__name__)
def test_an_error_response_rolls_back_the_requests_writes(client_a):
    from fleet.tenancy import rls
    from fleet.tenancy.models import ApiKey

    response = client_a.post("/api/v1/test-writes-then-fails", {}, format="json")
    assert_error(response, 409, "conflict")
    with rls.bypass(reason="test"):
        assert not ApiKey.objects.filter(name="half-done").exists()
