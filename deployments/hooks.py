"""How deployments plugs into the apps below it (they never import deployments)."""

from django.db.models import Q

from apps_catalog.signals import target_removed
from devices import registry
from devices.label_selector import reads_keys

from . import control
from .models import AssignmentStatus, Deployment, DeploymentStatus, DeviceAssignment, DeviceState
from .selectors import winning_assignments
from .services import assignments_refresh, assignments_refresh_for_deployments


def heartbeat_directives(*, device, organization):
    return {"directives": control.directives_deliver(device=device)}


def health_fields(*, device, organization):
    state = DeviceState.objects.filter(device=device).first()
    failing = DeviceAssignment.objects.filter(
        device=device, in_rollout=True, status=AssignmentStatus.FAILED,
        deployment__status__in=(DeploymentStatus.ROLLING_OUT, DeploymentStatus.PAUSED, DeploymentStatus.COMPLETED),
    ).select_related("deployment__capability")
    return {
        "drift": bool(state and state.drift),
        "drifted": state.drifted if state else [],
        "failing_assignments": [
            {"deployment_id": str(a.deployment_id), "capability": a.deployment.capability.key, "error": a.error}
            for a in failing
        ],
    }


def on_target_removed(sender, *, organization, app, target, **kwargs):
    """Seed 004: drop the target from deployments that name it, then re-materialize them."""
    target_id = str(target.id)
    affected = [
        d for d in Deployment.objects.filter(organization=organization).exclude(
            status__in=(DeploymentStatus.CANCELLED, DeploymentStatus.ROLLED_BACK)
        ).filter(Q(app=app) | Q(app__isnull=True))
        if target_id in (d.targeting.get("app_target_ids") or [])
    ]
    for deployment in affected:
        deployment.targeting = {
            **deployment.targeting,
            "app_target_ids": [t for t in deployment.targeting["app_target_ids"] if t != target_id],
        }
        deployment.save(update_fields=["targeting", "updated_at"])
    assignments_refresh_for_deployments(organization=organization, deployments=affected)


def on_variant_saved(sender, instance, **kwargs):
    """A catalog variant was added or changed: recompute capability profiles after commit (one task per
    organization per transaction, however many variants changed; see orchestration.md)."""
    from .orchestrator import catalog_changed

    catalog_changed(org_id=instance.organization_id)


def device_assignments(*, organization, devices):
    """`assignment` on device list and detail responses: one query for the whole page."""
    winners = winning_assignments(organization=organization, device_ids=[d.id for d in devices])
    return {
        device_id: {
            "assignment": [
                {
                    "deployment_id": w.deployment_id,
                    "capability": w.deployment.capability.key,
                    "variant_id": w.variant.id,
                    "version": w.variant.version,
                    "source": w.source,
                    "status": w.status,
                }
                for w in rows
            ]
        }
        for device_id, rows in winners.items()
    }


def devices_changed(*, organization, device_ids, label_keys=None, groups_changed=None):
    """Assignments follow the change now; capability profiles are recomputed after commit. When
    only labels changed, only the deployments whose selector reads them or that name a group whose
    membership changed are re-materialized, and profiles (which ignore labels) are left alone."""
    from . import orchestrator

    if label_keys is None:
        assignments_refresh(organization=organization, device_ids=device_ids)
        orchestrator.devices_changed(organization=organization, device_ids=device_ids)
        return
    groups = {str(group_id) for group_id in groups_changed or ()}
    assignments_refresh(
        organization=organization, device_ids=device_ids,
        only=lambda targeting: reads_keys(targeting.get("selector") or {}, label_keys)
        or bool(groups & {str(g) for g in targeting.get("device_group_ids") or []}),
    )


def groups_changed(*, organization, group_ids):
    """Device groups were created, edited or deleted: re-materialize the live deployments naming them."""
    wanted = {str(group_id) for group_id in group_ids}
    affected = [
        deployment
        for deployment in Deployment.objects.filter(organization=organization).exclude(
            status__in=(DeploymentStatus.CANCELLED, DeploymentStatus.ROLLED_BACK)
        ).select_related("organization")
        if wanted & {str(g) for g in (deployment.targeting or {}).get("device_group_ids") or []}
    ]
    assignments_refresh_for_deployments(organization=organization, deployments=affected)


def connect():
    from django.db.models.signals import post_save

    from apps_catalog.models import ModelVariant

    from .training import heartbeat_pending_round

    registry.register_heartbeat_provider(heartbeat_directives)
    registry.register_heartbeat_provider(heartbeat_pending_round)
    post_save.connect(on_variant_saved, sender=ModelVariant, dispatch_uid="deployments.on_variant_saved")
    registry.register_health_provider(health_fields)
    registry.register_enricher(device_assignments)
    registry.register_change_listener(devices_changed)
    registry.register_group_change_listener(groups_changed)
    registry.register_presence_publisher(control.published_generations)
    target_removed.connect(on_target_removed, dispatch_uid="deployments.on_target_removed")
