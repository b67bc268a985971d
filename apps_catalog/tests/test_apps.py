import pytest
from django.db import transaction

from apps_catalog import services
from apps_catalog.models import App, AppKey, AppTarget, InferenceRequestLog, ModelCapability
from apps_catalog.signals import target_removed
from apps_catalog.tests.factories import (
    AppFactory,
    AppTargetFactory,
    CapabilitySlotFactory,
    InferenceRequestLogFactory,
)
from fleet.activity.models import ActivityEvent
from fleet.tenancy import rls


def counts(org):
    with rls.bypass(reason="test"):
        return {
            "apps": App.objects.filter(organization=org).count(),
            "targets": AppTarget.objects.filter(organization=org).count(),
            "keys": AppKey.objects.filter(organization=org).count(),
            "events": ActivityEvent.objects.filter(organization=org).count(),
        }


# --- apps -------------------------------------------------------------------------------------------


def test_app_crud(client_a, org):
    response = client_a.post("/api/v1/apps", {"name": "Canary Demo", "description": "d"}, format="json")
    assert response.status_code == 201, response.json()
    app = response.json()
    assert app["slug"] == "canary-demo" and app["targets"] == [] and app["capabilities"] == []
    again = client_a.post("/api/v1/apps", {"name": "Canary Demo"}, format="json").json()
    assert again["slug"] == "canary-demo-2"
    assert client_a.post("/api/v1/apps", {"name": "x", "slug": "canary-demo"}, format="json").status_code == 409
    reserved = client_a.post("/api/v1/apps", {"name": "x", "slug": "bootstrap"}, format="json")
    assert reserved.status_code == 400 and "slug" in reserved.json()["fields"]

    assert client_a.get("/api/v1/apps/canary-demo").json()["id"] == app["id"]
    response = client_a.patch("/api/v1/apps/canary-demo", {"name": "Renamed"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "Renamed"
    response = client_a.patch("/api/v1/apps/canary-demo", {"slug": "new"}, format="json")
    assert response.status_code == 400 and "slug" in response.json()["fields"]  # slugs do not change
    assert client_a.put("/api/v1/apps/canary-demo", {"name": "x"}, format="json").status_code == 405
    assert client_a.delete("/api/v1/apps/canary-demo").status_code == 405  # archive instead


def test_archive_hides_from_list(client_a, org):
    AppFactory(organization=org, slug="live")
    AppFactory(organization=org, slug="old")
    response = client_a.post("/api/v1/apps/old/archive")
    assert response.status_code == 200 and response.json()["archived_at"] is not None
    assert [a["slug"] for a in client_a.get("/api/v1/apps").json()["apps"]] == ["live"]
    body = client_a.get("/api/v1/apps?include_archived=true").json()
    assert [a["slug"] for a in body["apps"]] == ["live", "old"] and body["total"] == 2
    assert client_a.get("/api/v1/apps/old").status_code == 200  # still addressable, for audit
    assert client_a.get("/api/v1/apps?include_archived=maybe").status_code == 400
    # archived apps are frozen
    response = client_a.post("/api/v1/apps/old/targets", {"platform": "ios", "identifier": "a.b"}, format="json")
    assert response.status_code == 409


def test_archive_keeps_targets_and_slots(client_a, org):
    app = AppFactory(organization=org)
    AppTargetFactory(organization=org, app=app)
    CapabilitySlotFactory(organization=org, app=app)
    client_a.post(f"/api/v1/apps/{app.slug}/archive")
    body = client_a.get(f"/api/v1/apps/{app.slug}").json()
    assert len(body["targets"]) == 1 and len(body["capabilities"]) == 1


def test_roles(make_client, org):
    viewer = make_client(org, role="viewer")
    AppFactory(organization=org, slug="seen")
    assert viewer.get("/api/v1/apps").status_code == 200
    response = viewer.post("/api/v1/apps", {"name": "nope"}, format="json")
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    assert viewer.get("/api/v1/apps/seen/keys").status_code == 403  # keys: admin only


def test_app_list_query_count_does_not_grow(client_a, org, django_assert_max_num_queries):
    chat = ModelCapability.objects.get(key="chat")
    for n in range(6):
        app = AppFactory(organization=org)
        AppTargetFactory(organization=org, app=app)
        AppTargetFactory(organization=org, app=app, platform="android")
        CapabilitySlotFactory(organization=org, app=app)
        CapabilitySlotFactory(organization=org, app=app, capability=chat)
    client_a.get("/api/v1/apps")  # warm-up: the key's last_used_at is written on first use
    with django_assert_max_num_queries(9) as small:
        assert len(client_a.get("/api/v1/apps?limit=1").json()["apps"]) == 1
    with django_assert_max_num_queries(9) as large:
        body = client_a.get("/api/v1/apps?limit=1000").json()
    assert len(body["apps"]) == 6 and len(body["apps"][0]["capabilities"]) == 2
    assert body["apps"][0]["capabilities"][0]["variant"]["name"]
    assert len(large.captured_queries) == len(small.captured_queries)


# --- bootstrap --------------------------------------------------------------------------------------


def test_bootstrap_mobile_returns_both_keys_once(client_a, org, bearer):
    response = client_a.post(
        "/api/v1/apps/bootstrap", {"name": "Canary", "platform": "ios", "identifier": "com.octomil.canary"}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["app"]["slug"] == "canary"
    assert body["target"]["platform"] == "ios" and body["target"]["identifier"] == "com.octomil.canary"
    assert body["app"]["targets"][0]["id"] == body["target"]["id"]
    assert body["app_key"]["kind"] == "secret" and body["app_key"]["key"].startswith("ak_live_")
    assert body["publishable_key"]["kind"] == "publishable" and body["publishable_key"]["key"].startswith("pk_live_")
    with rls.bypass(reason="test"):
        stored = set(AppKey.objects.filter(app_id=body["app"]["id"]).values_list("secret_hash", flat=True))
    assert body["app_key"]["key"] not in stored and len(stored) == 2  # hashed only
    listed = client_a.get("/api/v1/apps/canary/keys").json()
    assert listed["total"] == 2 and all("key" not in k for k in listed["keys"])
    # both keys work
    assert bearer(body["publishable_key"]["key"]).get("/api/v1/apps").status_code == 403  # authenticated, refused
    assert bearer(body["app_key"]["key"]).get("/api/v1/apps/canary/capabilities").status_code == 200


def test_bootstrap_server_platform_has_no_publishable_key(client_a):
    body = client_a.post(
        "/api/v1/apps/bootstrap", {"name": "Backend", "slug": "be", "platform": "server", "identifier": "api"},
        format="json",
    ).json()
    assert body["app"]["slug"] == "be" and body["publishable_key"] is None and body["app_key"]["key"]


def test_bootstrap_is_atomic(client_a, org, monkeypatch):
    before = counts(org)

    def broken(**kwargs):
        raise RuntimeError("injected after the target was created")

    monkeypatch.setattr(services, "app_key_create", broken)
    client_a.raise_request_exception = False
    response = client_a.post(
        "/api/v1/apps/bootstrap", {"name": "Doomed", "platform": "android", "identifier": "com.doomed"}, format="json"
    )
    assert response.status_code == 500 and response.json()["error"] == "internal_error"
    assert counts(org) == before


def test_bootstrap_service_is_atomic(org, org_context, monkeypatch):
    org_context(org)
    before = counts(org)
    real = services.app_key_create
    calls = []

    def fail_on_publishable(**kwargs):
        calls.append(kwargs["kind"])
        if kwargs["kind"] == "publishable":
            raise RuntimeError("boom")
        return real(**kwargs)

    monkeypatch.setattr(services, "app_key_create", fail_on_publishable)
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            services.app_bootstrap(organization=org, name="X", platform="web", identifier="https://x.example")
    assert calls == ["secret", "publishable"]
    assert counts(org) == before


def test_bootstrap_duplicate_target_leaves_nothing(client_a, org):
    AppTargetFactory(organization=org, platform="ios", identifier="com.taken")
    before = counts(org)
    response = client_a.post(
        "/api/v1/apps/bootstrap", {"name": "Second", "platform": "ios", "identifier": "com.taken"}, format="json"
    )
    assert response.status_code == 409 and response.json()["error"] == "conflict"
    assert counts(org) == before


@pytest.mark.parametrize(
    "body, field",
    [
        ({"platform": "ios", "identifier": "a"}, "name"),
        ({"name": "x", "platform": "symbian", "identifier": "a"}, "platform"),
        ({"name": "x", "platform": "ios"}, "identifier"),
        ({"name": "x", "platform": "ios", "identifier": "a", "org": "other"}, "org"),
    ],
)
def test_bootstrap_validation(client_a, body, field):
    response = client_a.post("/api/v1/apps/bootstrap", body, format="json")
    assert response.status_code == 400 and field in response.json()["fields"]


# --- targets ----------------------------------------------------------------------------------------


def test_targets(client_a, org, app):
    response = client_a.post(f"/api/v1/apps/{app.slug}/targets", {"platform": "android", "identifier": "com.a"}, format="json")
    assert response.status_code == 201, response.json()
    target_id = response.json()["id"]
    listed = client_a.get(f"/api/v1/apps/{app.slug}/targets").json()
    assert listed["total"] == 1 and listed["targets"][0]["id"] == target_id
    assert client_a.delete(f"/api/v1/apps/{app.slug}/targets/{target_id}").status_code == 204
    assert client_a.get(f"/api/v1/apps/{app.slug}/targets").json()["total"] == 0
    assert client_a.delete(f"/api/v1/apps/{app.slug}/targets/{target_id}").status_code == 404


def test_duplicate_target_is_409_across_apps_of_the_organization(client_a, org, other_org, app):
    other_app = AppFactory(organization=org)
    AppTargetFactory(organization=org, app=other_app, platform="ios", identifier="com.shared")
    response = client_a.post(f"/api/v1/apps/{app.slug}/targets", {"platform": "ios", "identifier": "com.shared"}, format="json")
    assert response.status_code == 409 and "another app" in response.json()["message"]
    # same identifier on another platform is fine, and other organizations are independent
    ok = client_a.post(f"/api/v1/apps/{app.slug}/targets", {"platform": "android", "identifier": "com.shared"}, format="json")
    assert ok.status_code == 201
    AppTargetFactory(organization=other_org, platform="web", identifier="https://shared.example")
    ok = client_a.post(f"/api/v1/apps/{app.slug}/targets", {"platform": "web", "identifier": "https://shared.example"}, format="json")
    assert ok.status_code == 201


def test_target_removed_receiver_runs_inside_the_transaction(client_a, org, app):
    target = AppTargetFactory(organization=org, app=app)
    seen = []

    def receiver(sender, organization, app, target, **kwargs):
        from django.db import connection

        seen.append((organization.id, app.id, target.id, connection.in_atomic_block))
        assert AppTarget.objects.filter(id=target.id).exists()  # called before the delete, under RLS

    target_removed.connect(receiver)
    try:
        assert client_a.delete(f"/api/v1/apps/{app.slug}/targets/{target.id}").status_code == 204
    finally:
        target_removed.disconnect(receiver)
    assert seen == [(org.id, app.id, target.id, True)]


def test_target_removed_receiver_failure_rolls_back(org, org_context, app):
    target = AppTargetFactory(organization=org, app=app)
    org_context(org)

    def receiver(**kwargs):
        AppTarget.objects.filter(id=kwargs["target"].id).update(identifier="touched")
        raise RuntimeError("reconciliation failed")

    target_removed.connect(receiver)
    try:
        with pytest.raises(RuntimeError):
            services.app_target_delete(target=target)
    finally:
        target_removed.disconnect(receiver)
    stored = AppTarget.objects.get(id=target.id)
    assert stored.identifier == target.identifier  # the receiver's write was rolled back too
    assert not ActivityEvent.objects.filter(verb="app.target_removed").exists()


def test_app_target_for_selector(org, org_context, app):
    from apps_catalog import selectors

    first = AppTargetFactory(organization=org, app=app, platform="ios", identifier="com.a")
    second = AppTargetFactory(organization=org, app=app, platform="ios", identifier="com.b")
    org_context(org)
    assert selectors.app_target_for(organization=org, app=app, platform="ios") == first
    assert selectors.app_target_for(organization=org, app=app, platform="ios", identifier="com.b") == second
    assert selectors.app_target_for(organization=org, app=app, platform="android") is None
    assert selectors.app_target_by_identifier(organization=org, platform="ios", identifier="com.b") == second


# --- activity and first request ---------------------------------------------------------------------


def test_app_activity_feed(client_a, org, app):
    other = AppFactory(organization=org)
    client_a.post(f"/api/v1/apps/{app.slug}/targets", {"platform": "ios", "identifier": "com.feed"}, format="json")
    client_a.patch(f"/api/v1/apps/{app.slug}", {"name": "Feed"}, format="json")
    client_a.patch(f"/api/v1/apps/{other.slug}", {"name": "Other"}, format="json")
    body = client_a.get(f"/api/v1/apps/{app.slug}/activity").json()
    assert [e["verb"] for e in body["events"]] == ["app.updated", "app.target_added"]  # newest first
    assert all(e["app_id"] == str(app.id) for e in body["events"]) and body["total"] == 2
    filtered = client_a.get(f"/api/v1/apps/{app.slug}/activity?verb=app.updated").json()
    assert filtered["total"] == 1


def test_app_activity_query_count(client_a, org, app, django_assert_max_num_queries):
    for n in range(5):
        client_a.post(f"/api/v1/apps/{app.slug}/targets", {"platform": "ios", "identifier": f"q{n}"}, format="json")
    client_a.get(f"/api/v1/apps/{app.slug}/activity")  # warm-up (last_used_at)
    with django_assert_max_num_queries(8) as small:
        client_a.get(f"/api/v1/apps/{app.slug}/activity?limit=1")
    with django_assert_max_num_queries(8) as large:
        assert len(client_a.get(f"/api/v1/apps/{app.slug}/activity").json()["events"]) == 5
    assert len(large.captured_queries) == len(small.captured_queries)


def test_first_request(client_a, org, app):
    assert client_a.get(f"/api/v1/apps/{app.slug}/first-request").json() == {
        "received": False, "first_at": None, "via": None
    }
    late = InferenceRequestLogFactory(organization=org, app=app, via="local")
    early = InferenceRequestLogFactory(organization=org, app=app, via="cloud", received_at=late.received_at.replace(year=2020))
    InferenceRequestLogFactory(organization=org, via="local", received_at=early.received_at.replace(year=2019))  # other app
    body = client_a.get(f"/api/v1/apps/{app.slug}/first-request").json()
    assert body["received"] is True and body["via"] == "cloud"
    assert body["first_at"].startswith("2020-")
    with rls.bypass(reason="test"):
        assert InferenceRequestLog.objects.count() == 3


def test_inference_request_record_feeds_first_request(client_a, org, org_context, app):
    from fleet.errors import Invalid

    org_context(org)
    services.inference_request_record(organization=org, app=app, via="cloud")
    services.inference_request_record(organization=org, app=app, via="local")
    with pytest.raises(Invalid):
        services.inference_request_record(organization=org, app=app, via="carrier-pigeon")
    assert ActivityEvent.objects.filter(verb="app.first_request", app_ref=app.id).count() == 1
    rls.deactivate()
    body = client_a.get(f"/api/v1/apps/{app.slug}/first-request").json()
    assert body["received"] is True and body["via"] == "cloud"


@pytest.mark.parametrize("resource", ["targets", "keys"])
def test_nested_list_query_counts_do_not_grow(client_a, org, app, resource, django_assert_max_num_queries):
    from apps_catalog.tests.factories import AppKeyFactory

    for n in range(5):
        if resource == "targets":
            AppTargetFactory(organization=org, app=app)
        else:
            AppKeyFactory(organization=org, app=app)
    url = f"/api/v1/apps/{app.slug}/{resource}"
    client_a.get(url)  # warm-up (last_used_at)
    with django_assert_max_num_queries(8) as small:
        assert len(client_a.get(f"{url}?limit=1").json()[resource]) == 1
    with django_assert_max_num_queries(8) as large:
        assert len(client_a.get(url).json()[resource]) == 5
    assert len(small.captured_queries) == len(large.captured_queries)
