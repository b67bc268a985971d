import pytest

from exports import services
from exports.models import ExportJob, Status
from exports.tests.factories import ExportJobFactory
from fleet.tenancy import rls
from fleet.tenancy.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_export_admin_shows_progress_size_and_a_download_link_and_reruns(client, org):
    ready = ExportJobFactory(organization=org)
    services.export_run(job_id=str(ready.id), org_id=str(org.id))
    failed = ExportJobFactory(organization=org, status=Status.FAILED, attempts=3, error="boom")
    running = ExportJobFactory(organization=org, status=Status.RUNNING, progress=0.5)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get("/admin/exports/exportjob/").content.decode()
    assert f"/api/v1/exports/{ready.id}/download?expires=" in page
    assert '<progress max="100" value="50"></progress>' in page
    assert client.get(f"/admin/exports/exportjob/{ready.pk}/change/").status_code == 200
    response = client.post(
        "/admin/exports/exportjob/", {"action": "rerun", "_selected_action": [failed.pk, running.pk]}, follow=True
    )
    assert "1 export(s) queued again." in response.content.decode()
    with rls.bypass(reason="test"):
        assert ExportJob.objects.get(pk=failed.pk).status == Status.PENDING
        assert ExportJob.objects.get(pk=running.pk).status == Status.RUNNING
