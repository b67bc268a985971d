import pytest
from django.contrib.auth.models import Permission

from fleet.tenancy import rls
from fleet.tenancy.models import ApiKey
from fleet.tenancy.tests.factories import ApiKeyFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def keys(org, other_org):
    return ApiKeyFactory(organization=org, name="alpha-key"), ApiKeyFactory(organization=other_org, name="beta-key")


def test_superuser_sees_every_organization(client, keys):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get("/admin/tenancy/apikey/").content.decode()
    assert "alpha-key" in page and "beta-key" in page


def test_staff_member_sees_only_their_organizations(client, org, keys):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_apikey", "add_apikey"]))
    MembershipFactory(organization=org, user=staff)
    client.force_login(staff)
    page = client.get("/admin/tenancy/apikey/").content.decode()
    assert "alpha-key" in page and "beta-key" not in page


def test_adding_a_key_shows_the_secret_once_and_stores_only_its_hash(client, org):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = client.post(
        "/admin/tenancy/apikey/add/", {"organization": org.id, "name": "from-admin", "role": "operator"}
    )
    assert response.status_code == 200
    page = response.content.decode()
    secret = page.split("<pre")[1].split(">", 1)[1].split("</pre>")[0].strip()
    assert secret.startswith("sk_live_")
    with rls.bypass(reason="test"):
        key = ApiKey.objects.get(name="from-admin")
    assert key.prefix == secret[:16] and key.role == "operator"
    change_page = client.get(f"/admin/tenancy/apikey/{key.pk}/change/").content.decode()
    assert secret not in change_page and key.secret_hash not in change_page
    assert secret not in str(response.cookies)


def test_revoke_action_uses_the_service(client, org):
    key = ApiKeyFactory(organization=org)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    client.post("/admin/tenancy/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    with rls.bypass(reason="test"):
        assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
