from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from fleet.tenancy import credentials, rls, services
from fleet.tenancy.models import ApiKey
from fleet.tenancy.tests.factories import ApiKeyFactory, MembershipFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/organization"


def get(authorization=None, **headers):
    client = APIClient()
    if authorization is not None:
        headers["HTTP_AUTHORIZATION"] = authorization
    return client.get(URL, **headers)


def assert_unauthorized(response):
    assert response.status_code == 401, response.content
    body = response.json()
    assert body["error"] == "unauthorized"
    assert body["message"]
    assert body["fields"] == {}
    assert response["WWW-Authenticate"].startswith("Bearer")
    return body


def test_missing_credentials():
    assert_unauthorized(get())


@pytest.mark.parametrize("header", ["sk_live_abc", "Bearer", "Bearer ", "Basic Zm9vOmJhcg==", "Bearer sk_live_short"])
def test_malformed_credentials(header):
    assert_unauthorized(get(header))


def test_checksum_broken_key_is_rejected_without_a_query():
    secret = credentials.generate(prefix="sk_live_")
    broken = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    with CaptureQueriesContext(connection) as queries:
        response = get(f"Bearer {broken}")
    assert_unauthorized(response)
    assert [q["sql"] for q in queries.captured_queries if "apikey" in q["sql"].lower() or "credential" in q["sql"]] == []


def test_unknown_revoked_and_expired_keys_get_identical_401_bodies(org):
    unknown = credentials.generate(prefix="sk_live_")
    revoked = ApiKeyFactory(organization=org)
    with rls.bypass(reason="test"):
        services.api_key_revoke(api_key=revoked)
    expired = ApiKeyFactory(organization=org)
    with rls.bypass(reason="test"):
        ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    bodies = [get(f"Bearer {s}").content for s in (unknown, revoked.secret, expired.secret)]
    for body in bodies:
        assert b'"unauthorized"' in body
    assert bodies[0] == bodies[1] == bodies[2]


def test_valid_key_resolves_its_organization_and_tracks_last_use(org):
    api_key = ApiKeyFactory(organization=org)
    response = get(f"Bearer {api_key.secret}")
    assert response.status_code == 200
    assert response.json()["id"] == str(org.id)
    with rls.bypass(reason="test"):
        first_use = ApiKey.objects.get(pk=api_key.pk).last_used_at
    assert first_use is not None
    get(f"Bearer {api_key.secret}")
    with rls.bypass(reason="test"):
        assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first_use  # at most once a minute


def test_revoking_through_the_api_gives_401_at_once(org, make_client):
    admin = make_client(org)
    victim = ApiKeyFactory(organization=org)
    assert get(f"Bearer {victim.secret}").status_code == 200
    assert admin.delete(f"/api/v1/api-keys/{victim.id}").status_code == 204
    assert_unauthorized(get(f"Bearer {victim.secret}"))


# --- JWT -------------------------------------------------------------------------------------------


def obtain(**data):
    return APIClient().post("/api/v1/auth/token", data, format="json")


def test_jwt_obtain_use_and_refresh(org):
    membership = MembershipFactory(organization=org, role="operator")
    response = obtain(username=membership.user.username, password="correct horse battery")
    assert response.status_code == 200, response.content
    tokens = response.json()
    assert tokens["organization"] == org.slug and tokens["role"] == "operator"
    me = get(f"Bearer {tokens['access']}")
    assert me.status_code == 200 and me.json()["slug"] == org.slug

    refreshed = APIClient().post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 200
    assert get(f"Bearer {refreshed.json()['access']}").json()["slug"] == org.slug


def test_jwt_with_several_organizations_needs_one_named(org, other_org):
    user = UserFactory()
    MembershipFactory(organization=org, user=user)
    MembershipFactory(organization=other_org, user=user)
    response = obtain(username=user.username, password="correct horse battery")
    assert response.status_code == 400 and "organization" in response.json()["fields"]
    chosen = obtain(username=user.username, password="correct horse battery", organization=other_org.slug)
    assert chosen.status_code == 200
    assert get(f"Bearer {chosen.json()['access']}").json()["slug"] == other_org.slug


def test_jwt_bad_password_unknown_org_and_garbage_tokens(org):
    membership = MembershipFactory(organization=org)
    assert obtain(username=membership.user.username, password="nope").status_code == 401
    assert obtain(username=membership.user.username, password="correct horse battery", organization="nope").status_code == 401
    assert obtain(username="", password="").status_code == 400
    assert_unauthorized(get("Bearer aaa.bbb.ccc"))
    bad_refresh = APIClient().post("/api/v1/auth/token/refresh", {"refresh": "aaa.bbb.ccc"}, format="json")
    assert bad_refresh.status_code == 401 and bad_refresh.json()["error"] == "unauthorized"


def test_jwt_stops_working_when_membership_is_removed(org):
    membership = MembershipFactory(organization=org)
    access = obtain(username=membership.user.username, password="correct horse battery").json()["access"]
    with rls.bypass(reason="test"):
        membership.delete()
    assert_unauthorized(get(f"Bearer {access}"))


def test_user_without_organization_gets_401():
    user = UserFactory()
    assert obtain(username=user.username, password="correct horse battery").status_code == 401


# --- Session (browsable API) -----------------------------------------------------------------------


def test_session_uses_the_single_membership_or_x_organization(org, other_org):
    user = UserFactory()
    MembershipFactory(organization=org, user=user)
    client = APIClient()
    client.force_login(user)
    assert client.get(URL).json()["slug"] == org.slug
    MembershipFactory(organization=other_org, user=user)
    assert client.get(URL).status_code == 401
    assert client.get(URL, HTTP_X_ORGANIZATION=other_org.slug).json()["slug"] == other_org.slug
    stranger = OrganizationFactory()
    assert client.get(URL, HTTP_X_ORGANIZATION=stranger.slug).status_code == 401


# --- Roles ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "list_status", "create_status", "patch_org_status"),
    [("viewer", 403, 403, 403), ("operator", 403, 403, 403), ("admin", 200, 201, 403), ("owner", 200, 201, 200)],
)
def test_role_map(org, make_client, role, list_status, create_status, patch_org_status):
    client = make_client(org, role=role)
    assert client.get("/api/v1/api-keys").status_code == list_status
    assert client.post("/api/v1/api-keys", {"name": "x", "role": "viewer"}, format="json").status_code == create_status
    response = client.patch(URL, {"name": "Renamed"}, format="json")
    assert response.status_code == patch_org_status
    if patch_org_status == 403:
        assert response.json()["error"] == "forbidden"
