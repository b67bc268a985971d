import pytest

from fleet.tenancy import rls
from fleet.tenancy.tests.factories import UserFactory
from telemetry.models import QuarantinedReading, Reading
from telemetry.tests.factories import AnnotationFactory, QuarantinedReadingFactory, ReadingFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_admin_pages_render(superuser, org):
    reading = ReadingFactory(organization=org)
    item = QuarantinedReadingFactory(organization=org)
    annotation = AnnotationFactory(organization=org)
    for url in [
        "/admin/telemetry/reading/",
        "/admin/telemetry/quarantinedreading/",
        f"/admin/telemetry/quarantinedreading/{item.pk}/change/",
        "/admin/telemetry/annotationclass/",
        f"/admin/telemetry/annotationclass/{annotation.annotation_class_id}/change/",
        "/admin/telemetry/annotation/",
        f"/admin/telemetry/annotation/{annotation.pk}/change/",
    ]:
        assert superuser.get(url).status_code == 200, url
    assert reading.metric in superuser.get("/admin/telemetry/reading/").content.decode()


def test_release_action_uses_the_service(superuser, org):
    fixable = QuarantinedReadingFactory(organization=org, raw={"metric": "m", "ts": "2026-01-01T00:00:00Z", "value": 1})
    broken = QuarantinedReadingFactory(organization=org)
    response = superuser.post(
        "/admin/telemetry/quarantinedreading/", {"action": "release", "_selected_action": [fixable.pk, broken.pk]},
        follow=True,
    )
    assert "1 released." in response.content.decode()
    with rls.bypass(reason="test"):
        assert list(QuarantinedReading.objects.values_list("id", flat=True)) == [broken.id]
        assert Reading.objects.get().device_id == fixable.device_id
