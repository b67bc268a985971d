from collections import defaultdict
from uuid import UUID

from django.db.models import Count, Q

from apps_catalog.models import App, CatalogModel, ModelCapability, ModelVariant
from devices.models import Device
from fleet.db import JoinedRead, Table

from .models import (
    LIVE_STATUSES,
    SOURCE_RANK,
    AssignmentStatus,
    Deployment,
    DeviceAssignment,
    DeviceCommand,
)

REPORTING = (AssignmentStatus.INSTALLED, AssignmentStatus.ACTIVE, AssignmentStatus.FAILED)

LIVE_STATUS_VALUES = [status.value for status in LIVE_STATUSES]

# One device's live assignments with deployment, capability, variant, model and app: every
# desired-state poll and sync runs it, so it is precompiled (fleet.db).
DEVICE_ASSIGNMENTS_READ = JoinedRead(
    Table("a", DeviceAssignment),
    Table("d", Deployment, on="d.id = a.deployment_id"),
    Table("c", ModelCapability, on="c.id = d.capability_id"),
    Table("v", ModelVariant, on="v.id = d.variant_id"),
    Table("m", CatalogModel, on="m.id = v.model_id"),
    Table("app", App, on="app.id = d.app_id", outer=True),
    where=f"a.org_id = %s AND a.device_id = %s AND a.in_rollout AND d.status IN ({', '.join(['%s'] * len(LIVE_STATUS_VALUES))})",
    params=[("a", "organization"), ("a", "device"), *[("d", "status")] * len(LIVE_STATUS_VALUES)],
)


def deployment_queryset(*, organization):
    return (
        Deployment.objects.filter(organization=organization)
        .select_related("app", "capability", "variant", "variant__model")
        .order_by("-created_at", "id")
    )


def winning_assignments(*, organization, device_ids):
    """{device id: [assignment, …]}: the winning assignment per capability for each device.

    Among assignments in the rollout of live deployments: explicit device > group > selector >
    app target, then the most recently started deployment. A device outside the current stage's
    bucket has no live-in-rollout row for the new deployment, so the previous one keeps winning.
    Each winner's `variant` is the one the device gets: the deployment's, or the variant bound to
    the device's class (from its capability profile), else to its platform. One query for one
    device, two for any number (assignments, then their deployments), two more when a winning
    deployment has bindings.
    """
    device_ids = list(device_ids)
    if len(device_ids) == 1:  # one device (desired state, sync): one joined, precompiled query
        rows = []
        for row, deployment, capability, variant, model, app in DEVICE_ASSIGNMENTS_READ.fetch(
            [organization.id, device_ids[0], *LIVE_STATUS_VALUES]
        ):
            variant.model = model
            deployment.capability, deployment.variant, deployment.app = capability, variant, app
            row.deployment = deployment
            rows.append(row)
    else:
        # A page of devices shares a handful of deployments: load each once rather than joining (and
        # decoding the JSON of) deployment, app, variant and model on every row.
        rows = list(DeviceAssignment.objects.filter(
            organization=organization, device_id__in=device_ids, in_rollout=True, deployment__status__in=LIVE_STATUSES
        ))
        related = ("app", "capability", "variant", "variant__model")
        deployments = Deployment.objects.select_related(*related).in_bulk({row.deployment_id for row in rows})
        for row in rows:
            row.deployment = deployments[row.deployment_id]
    best = {}
    for row in rows:
        key = (row.device_id, row.deployment.capability_id)
        rank = (SOURCE_RANK[row.source], -(row.deployment.started_at or row.deployment.created_at).timestamp())
        if key not in best or rank < best[key][0]:
            best[key] = (rank, row)
    winners = defaultdict(list)
    for (device_id, _), (_, row) in sorted(best.items(), key=lambda item: item[1][1].deployment.capability.key):
        row.variant = row.deployment.variant
        winners[device_id].append(row)
    _apply_bindings([row for _, row in best.values() if row.deployment.bindings])
    return winners


def _apply_bindings(rows):
    if not rows:
        return
    keys = {
        device_id: (device_class, platform)
        for device_id, platform, device_class in Device.objects.filter(id__in={r.device_id for r in rows})
        .values_list("id", "platform", "capability_profile__device_class")
    }
    chosen = {}
    for row in rows:
        device_class, platform = keys.get(row.device_id, (None, None))
        bound = row.deployment.bindings.get(device_class) or row.deployment.bindings.get(platform)
        if bound and bound != str(row.deployment.variant_id):
            chosen[row] = bound
    variants = ModelVariant.objects.select_related("model").in_bulk({*chosen.values()})
    for row, variant_id in chosen.items():
        row.variant = variants.get(UUID(variant_id), row.variant)


def deployment_progress(*, deployment):
    """{targeted, in_rollout, by_status, stage, stage_percent, failure_rate} in one aggregate query."""
    # Aggregate aliases must not shadow field names used in the filters, hence the n_ prefix.
    statuses = {f"n_{s}": Count("pk", filter=Q(in_rollout=True, status=s)) for s in AssignmentStatus.values}
    counts = DeviceAssignment.objects.filter(deployment=deployment).aggregate(
        n_targeted=Count("pk"), n_in_rollout=Count("pk", filter=Q(in_rollout=True)), **statuses
    )
    by_status = {s: counts[f"n_{s}"] for s in AssignmentStatus.values}
    reporting = sum(by_status[s] for s in REPORTING)
    return {
        "targeted": counts["n_targeted"],
        "in_rollout": counts["n_in_rollout"],
        "by_status": by_status,
        "stage": deployment.current_stage,
        "stage_percent": deployment.stage_percent,
        "reporting": reporting,
        "failure_rate": round(by_status[AssignmentStatus.FAILED] / reporting, 4) if reporting else 0.0,
    }


def assignment_queryset(*, deployment):
    return (
        DeviceAssignment.objects.filter(deployment=deployment)
        .select_related("device")
        .order_by("device__device_id", "pk")
    )


def device_commands(*, organization, device):
    return DeviceCommand.objects.filter(organization=organization, device=device).order_by("-created_at", "id")
