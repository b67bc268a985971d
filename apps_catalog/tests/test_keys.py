import pytest

from apps_catalog import services
from apps_catalog.models import AppKeyKind
from apps_catalog.tests.factories import AppFactory, AppKeyFactory, InferenceConfigFactory
from fleet.api.authentication import INVALID_CREDENTIALS
from fleet.tenancy import credentials, rls


def test_publishable_key_is_refused_outside_its_endpoints(publishable_client, app):
    for method, url in [
        ("get", "/api/v1/apps"),
        ("post", "/api/v1/apps"),
        ("get", f"/api/v1/apps/{app.slug}"),
        ("get", f"/api/v1/apps/{app.slug}/inference-config"),
        ("get", "/api/v1/catalog/models"),
        ("get", "/api/v1/catalog/capabilities"),
        ("get", "/api/v1/organization"),
        ("get", "/api/v1/activity"),
        ("post", "/api/v1/apps/bootstrap"),
    ]:
        response = getattr(publishable_client, method)(url)
        assert response.status_code == 403, (url, response.status_code)
        assert response.json()["error"] == "forbidden"


def test_publishable_key_principal(rf, app):
    from apps_catalog.authentication import PublishableKeyAuthentication

    key = AppKeyFactory(organization=app.organization, app=app, kind="publishable")
    request = rf.get("/", HTTP_AUTHORIZATION=f"Bearer {key.secret}")
    from django.db import transaction

    with transaction.atomic():
        _, principal = PublishableKeyAuthentication().authenticate(request)
        assert principal.kind == "publishable_key" and principal.role is None
        assert principal.organization == app.organization and principal.credential_id == str(key.id)
        assert principal.label == app.slug and principal.extra["app"] == app
        assert rls.current_org_ids() == (str(app.organization_id),)
    rls.deactivate_context()


@pytest.mark.parametrize("kind", ["publishable", "secret"])
def test_keys_of_an_archived_app_are_401(app, bearer, kind, org_context):
    key = AppKeyFactory(organization=app.organization, app=app, kind=kind)
    with rls.bypass(reason="test"):
        services.app_archive(app=app)
    response = bearer(key.secret).get(f"/api/v1/apps/{app.slug}/capabilities")
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "message": INVALID_CREDENTIALS, "fields": {}}


def test_revoked_unknown_and_malformed_keys_are_401(app, bearer, client_a):
    key = AppKeyFactory(organization=app.organization, app=app, kind="secret")
    listed = client_a.get(f"/api/v1/apps/{app.slug}/keys").json()["keys"]
    assert listed[0]["prefix"] == key.prefix and listed[0]["last_used_at"] is None
    assert client_a.delete(f"/api/v1/apps/{app.slug}/keys/{key.id}").status_code == 204
    for secret in (key.secret, credentials.generate(prefix="pk_live_"), "pk_live_short", "ak_live_" + "x" * 46):
        response = bearer(secret).get(f"/api/v1/apps/{app.slug}/capabilities")
        assert response.status_code == 401 and response.json()["message"] == INVALID_CREDENTIALS


def test_app_key_reads_only_its_app_configuration(app, bearer):
    other = AppFactory(organization=app.organization)
    InferenceConfigFactory(organization=app.organization, app=app)
    InferenceConfigFactory(organization=app.organization, app=other)
    key = AppKeyFactory(organization=app.organization, app=app, kind=AppKeyKind.SECRET)
    client = bearer(key.secret)
    assert client.get(f"/api/v1/apps/{app.slug}/inference-config").status_code == 200
    assert client.get(f"/api/v1/apps/{app.slug}/capabilities").status_code == 200
    assert client.get(f"/api/v1/apps/{other.slug}/inference-config").status_code == 404
    assert client.put(f"/api/v1/apps/{app.slug}/inference-config", {}, format="json").status_code == 403
    assert client.get(f"/api/v1/apps/{app.slug}").status_code == 403
    assert client.get(f"/api/v1/apps/{app.slug}/targets").status_code == 403
    assert client.get("/api/v1/apps").status_code == 403
    with rls.bypass(reason="test"):
        key.refresh_from_db()
    assert key.last_used_at is not None


def test_key_create_shows_secret_once(client_a, app):
    response = client_a.post(f"/api/v1/apps/{app.slug}/keys", {"kind": "publishable", "name": "web"}, format="json")
    assert response.status_code == 201
    secret = response.json()["key"]
    assert secret.startswith("pk_live_") and credentials.is_well_formed(secret=secret, prefix="pk_live_")
    assert response.json()["prefix"] == secret[: len("pk_live_") + 8]
    assert all("key" not in k for k in client_a.get(f"/api/v1/apps/{app.slug}/keys").json()["keys"])
    bad = client_a.post(f"/api/v1/apps/{app.slug}/keys", {"kind": "master"}, format="json")
    assert bad.status_code == 400 and "kind" in bad.json()["fields"]
