from collections import defaultdict

from django.db.models import Count, Q

from .models import LIVE_STATUSES, SOURCE_RANK, AssignmentStatus, Deployment, DeviceAssignment, DeviceCommand

REPORTING = (AssignmentStatus.INSTALLED, AssignmentStatus.ACTIVE, AssignmentStatus.FAILED)


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
    One query for any number of devices.
    """
    rows = (
        DeviceAssignment.objects.filter(
            organization=organization,
            device_id__in=list(device_ids),
            in_rollout=True,
            deployment__status__in=LIVE_STATUSES,
        )
        .select_related("deployment", "deployment__app", "deployment__capability", "deployment__variant",
                        "deployment__variant__model")
    )
    best = {}
    for row in rows:
        key = (row.device_id, row.deployment.capability_id)
        rank = (SOURCE_RANK[row.source], -(row.deployment.started_at or row.deployment.created_at).timestamp())
        if key not in best or rank < best[key][0]:
            best[key] = (rank, row)
    winners = defaultdict(list)
    for (device_id, _), (_, row) in sorted(best.items(), key=lambda item: item[1][1].deployment.capability.key):
        winners[device_id].append(row)
    return winners


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
