from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from fleet.activity.models import ActivityEvent
from fleet.tenancy import rls
from fleet.tenancy.models import ApiKey, Organization
from fleet.tenancy.tests.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db


def test_get_organization(client_a, org):
    body = client_a.get("/api/v1/organization").json()
    assert body == {"id": str(org.id), "slug": org.slug, "name": org.name, "created_at": body["created_at"]}
    assert body["created_at"].endswith("Z")


def test_owner_renames_the_organization_and_it_is_recorded(org, make_client):
    owner = make_client(org, role="owner")
    response = owner.patch("/api/v1/organization", {"name": "Acme Robotics"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "Acme Robotics"
    events = owner.get("/api/v1/activity", {"verb": "organization.updated"}).json()["events"]
    assert events[0]["actor"]["type"] == "api_key"


def test_rename_validation_names_the_field(org, make_client):
    owner = make_client(org, role="owner")
    response = owner.patch("/api/v1/organization", {"name": "x" * 201}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "bad_request" and "name" in body["fields"] and body["message"].startswith("name:")


def test_create_api_key_shows_the_secret_once(client_a):
    response = client_a.post("/api/v1/api-keys", {"name": "ci", "role": "operator"}, format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["key"].startswith("sk_live_") and created["prefix"] == created["key"][:16]
    assert created["role"] == "operator"
    listed = client_a.get("/api/v1/api-keys").json()
    assert all("key" not in item and "secret_hash" not in item for item in listed["api_keys"])
    detail = client_a.get(f"/api/v1/api-keys/{created['id']}").json()
    assert "key" not in detail
    with rls.bypass(reason="test"):
        stored = ApiKey.objects.get(pk=created["id"])
    assert created["key"] not in str(stored.__dict__)
    with rls.bypass(reason="test"):
        assert ActivityEvent.objects.filter(verb="api_key.created", subject_id=created["id"]).exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x", "role": "emperor"}, "role"),
        ({"name": "x", "expires_at": "yesterday"}, "expires_at"),
        ({"name": "x", "expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
        ({"name": ["x"]}, "name"),
    ],
)
def test_create_api_key_bad_input(client_a, payload, field):
    response = client_a.post("/api/v1/api-keys", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_an_admin_cannot_mint_an_owner_key(org, make_client):
    response = make_client(org, role="admin").post("/api/v1/api-keys", {"name": "x", "role": "owner"}, format="json")
    assert response.status_code == 403 and "role" in response.json()["fields"]


def test_expiring_key_works_until_it_expires(client_a):
    expires = (timezone.now() + timedelta(hours=1)).isoformat()
    key = client_a.post("/api/v1/api-keys", {"name": "tmp", "expires_at": expires}, format="json").json()["key"]
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/organization").status_code == 200


def test_revoke_is_idempotent_and_unknown_ids_are_404(client_a, org):
    key = ApiKeyFactory(organization=org)
    assert client_a.delete(f"/api/v1/api-keys/{key.id}").status_code == 204
    assert client_a.delete(f"/api/v1/api-keys/{key.id}").status_code == 204
    assert client_a.delete("/api/v1/api-keys/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client_a.get("/api/v1/api-keys/not-a-uuid").status_code == 404


def test_api_key_list_pagination_and_constant_queries(client_a, org, django_assert_max_num_queries):
    for _ in range(30):
        ApiKeyFactory(organization=org)
    with django_assert_max_num_queries(8):
        small = client_a.get("/api/v1/api-keys", {"limit": 2}).json()
    with django_assert_max_num_queries(8):
        large = client_a.get("/api/v1/api-keys", {"limit": 1000}).json()
    assert small["total"] == large["total"] == 31
    assert len(small["api_keys"]) == 2 and len(large["api_keys"]) == 31
    assert small["limit"] == 2 and small["offset"] == 0
    page = client_a.get("/api/v1/api-keys", {"limit": 10, "offset": 30}).json()
    assert len(page["api_keys"]) == 1


@pytest.mark.parametrize("params", [{"limit": 1001}, {"limit": 0}, {"limit": "x"}, {"offset": -1}, {"limit": -5}])
def test_bad_pagination_is_400_naming_the_parameter(client_a, params):
    response = client_a.get("/api/v1/api-keys", params)
    assert response.status_code == 400
    assert set(response.json()["fields"]) == set(params)


def test_create_api_key_command_prints_only_the_secret(capsys, db):
    call_command("create_api_key", org="acme", create_org=True, name="deploy")
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("sk_live_") and "\n" not in secret
    organization = Organization.objects.get(slug="acme")
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/organization").json()["id"] == str(organization.id)


def test_create_api_key_command_refuses_unknown_org(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("create_api_key", org="nope")


def test_bootstrap_demo_prints_a_key_only_the_first_time(capsys, db):
    call_command("bootstrap_demo")
    first = capsys.readouterr().out
    call_command("bootstrap_demo")
    second = capsys.readouterr().out
    assert "sk_live_" in first and "sk_live_" not in second
