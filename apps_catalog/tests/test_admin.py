import pytest
from django.urls import reverse

from apps_catalog.models import App, AppKey, CatalogModel
from apps_catalog.tests.factories import (
    AppFactory,
    AppKeyFactory,
    AppTargetFactory,
    CapabilitySlotFactory,
    CatalogModelFactory,
    InferenceConfigFactory,
)
from fleet.tenancy import rls
from fleet.tenancy.tests.factories import MembershipFactory, UserFactory


@pytest.fixture
def superuser_client(client, db):
    user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(client, org):
    user = UserFactory(is_staff=True)
    MembershipFactory(organization=org, user=user)
    from django.contrib.auth.models import Permission

    user.user_permissions.set(Permission.objects.filter(content_type__app_label="apps_catalog"))
    client.force_login(user)
    return client


def public_model():
    with rls.bypass(reason="test"):
        return CatalogModel.objects.filter(organization__isnull=True).first()


def test_admin_pages_render(superuser_client, org):
    app = AppFactory(organization=org)
    AppTargetFactory(organization=org, app=app)
    CapabilitySlotFactory(organization=org, app=app)
    AppKeyFactory(organization=org, app=app)
    InferenceConfigFactory(organization=org, app=app)
    for name in ("modelcapability", "catalogmodel", "modelvariant", "app", "appkey", "inferenceconfig"):
        response = superuser_client.get(reverse(f"admin:apps_catalog_{name}_changelist"))
        assert response.status_code == 200, name
    assert superuser_client.get(reverse("admin:apps_catalog_app_change", args=[app.id])).status_code == 200
    model = public_model()
    assert superuser_client.get(reverse("admin:apps_catalog_catalogmodel_change", args=[model.id])).status_code == 200


def test_staff_sees_public_catalog_read_only(staff_client, org, other_org):
    model = public_model()
    mine = CatalogModelFactory(organization=org, name="mine")
    CatalogModelFactory(organization=other_org, name="theirs")
    listing = staff_client.get(reverse("admin:apps_catalog_catalogmodel_changelist"))
    assert listing.status_code == 200
    content = listing.content.decode()
    assert "mine" in content and model.name in content and "theirs" not in content
    # public entry: the change page is a read-only view; a POST does not modify it
    url = reverse("admin:apps_catalog_catalogmodel_change", args=[model.id])
    page = staff_client.get(url)
    assert page.status_code == 200 and 'name="name"' not in page.content.decode()
    assert staff_client.post(url, {"name": "hijacked"}).status_code == 403
    assert staff_client.get(reverse("admin:apps_catalog_catalogmodel_change", args=[mine.id])).status_code == 200


def test_admin_archive_action(superuser_client, org):
    app = AppFactory(organization=org)
    response = superuser_client.post(
        reverse("admin:apps_catalog_app_changelist"), {"action": "archive", "_selected_action": [str(app.id)]}
    )
    assert response.status_code == 302
    with rls.bypass(reason="test"):
        assert App.objects.get(id=app.id).archived_at is not None


def test_admin_key_action_shows_the_secret_once(superuser_client, org):
    app = AppFactory(organization=org)
    response = superuser_client.post(
        reverse("admin:apps_catalog_app_changelist"),
        {"action": "create_publishable_key", "_selected_action": [str(app.id)]},
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "pk_live_" in content and "shown once" in content
    with rls.bypass(reason="test"):
        key = AppKey.objects.get(app=app)
    secret = content.split("<code>")[1].split("</code>")[0]
    assert secret.startswith(key.prefix) and key.secret_hash not in content
    listing = superuser_client.get(reverse("admin:apps_catalog_appkey_changelist")).content.decode()
    assert secret not in listing
