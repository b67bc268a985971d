"""Beat tasks: health-gated progression of rolling deployments, command expiry, expired training rounds."""

from celery import shared_task

from fleet.tenancy import rls

from . import control, services, training
from .models import Deployment, DeploymentStatus


@shared_task(acks_late=True, ignore_result=True)
def deployments_evaluate():
    """Find rolling deployments (across organizations), then evaluate each in its organization."""
    with rls.bypass(reason="deployments health gates"):
        rolling = list(Deployment.objects.filter(status=DeploymentStatus.ROLLING_OUT).values_list("id", "organization_id"))
    outcomes = {}
    for deployment_id, org_id in rolling:
        with rls.organization_context(org_id=org_id):
            deployment = Deployment.objects.select_related("organization", "capability").filter(
                pk=deployment_id, status=DeploymentStatus.ROLLING_OUT
            ).first()
            if deployment is not None:
                outcomes[str(deployment_id)] = services.deployment_evaluate(deployment=deployment)
    return outcomes


@shared_task(acks_late=True, ignore_result=True)
def commands_expire():
    return control.commands_expire()


@shared_task(acks_late=True, ignore_result=True)
def training_rounds_close_expired():
    return training.training_rounds_close_expired()


# --- capability profiles (issue 7) ----------------------------------------------------------------------
@shared_task(acks_late=True, ignore_result=True)
def profiles_recompute(org_id, device_ids=None):
    """Recompute capability profiles of one organization (all devices, or `device_ids`). Idempotent."""
    from fleet.tenancy.models import Organization

    from . import orchestrator

    with rls.organization_context(org_id=org_id):
        organization = Organization.objects.filter(pk=org_id).first()
        if organization is None:
            return 0
        return orchestrator.profiles_refresh(organization=organization, device_ids=device_ids)


@shared_task(acks_late=True, ignore_result=True)
def profiles_recompute_catalog(org_id=None):
    """A catalog variant changed: recompute the profiles of one organization (a private variant) or,
    for the public catalog, enqueue one profiles_recompute per organization that has devices."""
    if org_id is not None:
        return profiles_recompute(org_id)
    from devices.models import Device

    with rls.bypass(reason="public catalog changed: recompute capability profiles"):
        org_ids = list(Device.objects.order_by().values_list("organization_id", flat=True).distinct())
    for each in org_ids:
        profiles_recompute.delay(str(each))
    return len(org_ids)
