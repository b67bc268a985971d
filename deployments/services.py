"""Deployments: lifecycle actions and assignment upkeep. Every action is one transaction; the
deployment row is locked first so concurrent actions serialize."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from apps_catalog import services as catalog_services
from apps_catalog.models import AppTarget, CapabilitySlot, Platform
from devices.models import Device
from fleet.activity import services as activity
from fleet.errors import Conflict, Invalid

from . import materialize
from .classifier import DEVICE_CLASSES
from .models import Deployment, Environment, StrategyType
from .models import DeploymentStatus as S
from .selectors import deployment_progress

TRANSITIONS = {
    "start": (S.DRAFT,),
    "pause": (S.ROLLING_OUT,),
    "resume": (S.PAUSED,),
    "promote": (S.ROLLING_OUT, S.PAUSED),
    "rollback": (S.ROLLING_OUT, S.PAUSED, S.COMPLETED),
    "cancel": (S.DRAFT, S.ROLLING_OUT, S.PAUSED),
}


def _record(*, deployment, actor, verb, data=None):
    activity.record(
        organization=deployment.organization,
        actor=actor,
        verb=verb,
        subject_type="deployment",
        subject_id=deployment.id,
        app_id=deployment.app_id,
        data={"capability": deployment.capability.key, "variant_id": str(deployment.variant_id), **(data or {})},
    )


def _lock(deployment, action):
    locked = Deployment.objects.select_for_update().select_related("capability").get(pk=deployment.pk)
    if locked.status not in TRANSITIONS[action]:
        raise Conflict(
            f"Cannot {action} a deployment that is {locked.status}.", fields={"status": [locked.status]}
        )
    return locked


def _group_members(organization):
    """Group membership is optional: devices may not provide groups (yet)."""
    from devices import selectors as device_selectors

    members = getattr(device_selectors, "group_member_ids", None)
    if members is None:
        return None
    return lambda group_ids: members(organization=organization, group_ids=group_ids)


def _materialize(deployment, device_ids=None):
    return materialize.materialize(
        deployment=deployment,
        percent=deployment.stage_percent,
        device_ids=device_ids,
        group_members=_group_members(deployment.organization),
    )


def validate_targeting(*, organization, app, targeting):
    """Every id must name something of this organization (400 listing the unknown ones)."""
    if not any(targeting.get(key) for key in ("app_target_ids", "device_group_ids", "device_ids")) and (
        targeting.get("selector") is None
    ):
        raise Invalid("Name at least one of app_target_ids, device_group_ids, selector, device_ids.", field="targeting")
    device_ids = {str(d) for d in targeting.get("device_ids") or []}
    if device_ids:
        found = {str(d) for d in Device.objects.filter(organization=organization, id__in=device_ids).values_list("id", flat=True)}
        if device_ids - found:
            raise Invalid(f"Unknown devices: {', '.join(sorted(device_ids - found))}.", field="targeting.device_ids")
    target_ids = {str(t) for t in targeting.get("app_target_ids") or []}
    if target_ids:
        targets = AppTarget.objects.filter(organization=organization, id__in=target_ids)
        if app is not None:
            targets = targets.filter(app=app)
        found = {str(t) for t in targets.values_list("id", flat=True)}
        if target_ids - found:
            raise Invalid(f"Unknown app targets: {', '.join(sorted(target_ids - found))}.", field="targeting.app_target_ids")
    group_ids = {str(g) for g in targeting.get("device_group_ids") or []}
    if group_ids:
        from devices import models as device_models

        group_model = getattr(device_models, "DeviceGroup", None)
        found = set()
        if group_model is not None:
            found = {str(g) for g in group_model.objects.filter(organization=organization, id__in=group_ids).values_list("id", flat=True)}
        if group_ids - found:
            raise Invalid(f"Unknown device groups: {', '.join(sorted(group_ids - found))}.", field="targeting.device_group_ids")


def validate_bindings(*, organization, capability, bindings):
    """{device class or platform: variant id} -> the same with string ids; 400 naming the key."""
    checked = {}
    for key, variant_id in bindings.items():
        if key not in DEVICE_CLASSES and key not in Platform.values:
            raise Invalid(f"{key!r} is neither a device class nor a platform.", field=f"bindings.{key}")
        catalog_services.variant_for_capability(
            organization=organization, capability=capability, variant_id=variant_id, field=f"bindings.{key}"
        )
        checked[key] = str(variant_id)
    return checked


def slot_bindings(*, organization, app, capability):
    """What a deployment of `app` inherits when it names no bindings: the app slot's, if any."""
    if app is None:
        return {}
    slot = CapabilitySlot.objects.filter(organization=organization, app=app, capability=capability).first()
    return dict(slot.bindings) if slot is not None else {}


@transaction.atomic
def deployment_create(*, organization, actor, capability, variant, targeting, strategy, environment, app=None,
                      bindings=None):
    """A draft deployment. `bindings` omitted: an app's deployment inherits the bindings of the app's
    slot for the capability (none without one), checked when the slot was set."""
    if variant.model.capability_id != capability.id:
        raise Invalid(f"Variant {variant.id} is not a {capability.key} model.", field="variant_id")
    validate_targeting(organization=organization, app=app, targeting=targeting)
    if bindings is None:
        bindings = slot_bindings(organization=organization, app=app, capability=capability)
    else:
        bindings = validate_bindings(organization=organization, capability=capability, bindings=bindings)
    deployment = Deployment.objects.create(
        organization=organization,
        app=app,
        capability=capability,
        variant=variant,
        environment=environment or Environment.PRODUCTION,
        targeting=targeting,
        strategy=strategy,
        bindings=bindings,
        created_by=actor.label,
    )
    deployment.organization = organization
    _record(deployment=deployment, actor=actor, verb="deployment.created", data={"environment": deployment.environment})
    return deployment


def _latest_completed(deployment):
    return (
        Deployment.objects.filter(
            organization_id=deployment.organization_id,
            app_id=deployment.app_id,
            capability_id=deployment.capability_id,
            environment=deployment.environment,
            status=S.COMPLETED,
        )
        .exclude(pk=deployment.pk)
        .order_by("-completed_at", "-created_at")
        .first()
    )


@transaction.atomic
def deployment_start(*, deployment, actor, now=None):
    deployment = _lock(deployment, "start")
    now = now or timezone.now()
    deployment.previous_deployment = _latest_completed(deployment)
    deployment.status = S.ROLLING_OUT
    deployment.current_stage = 0
    deployment.started_at = deployment.stage_started_at = now
    deployment.save(update_fields=["previous_deployment", "status", "current_stage", "started_at", "stage_started_at", "updated_at"])
    upserted, _ = _materialize(deployment)
    _record(deployment=deployment, actor=actor, verb="deployment.started", data={"targeted": upserted, "stage_percent": deployment.stage_percent})
    if deployment.stage_percent >= 100:
        _complete(deployment, actor=actor, now=now)
    return deployment


def _complete(deployment, *, actor, now):
    deployment.status = S.COMPLETED
    deployment.completed_at = now
    deployment.save(update_fields=["status", "completed_at", "updated_at"])
    superseded = Deployment.objects.filter(
        organization_id=deployment.organization_id,
        app_id=deployment.app_id,
        capability_id=deployment.capability_id,
        environment=deployment.environment,
        status=S.COMPLETED,
    ).exclude(pk=deployment.pk)
    count = superseded.update(status=S.SUPERSEDED, updated_at=now)
    _record(deployment=deployment, actor=actor, verb="deployment.completed", data={"superseded": count})


@transaction.atomic
def deployment_pause(*, deployment, actor):
    deployment = _lock(deployment, "pause")
    deployment.status = S.PAUSED
    deployment.save(update_fields=["status", "updated_at"])
    _record(deployment=deployment, actor=actor, verb="deployment.paused")
    return deployment


@transaction.atomic
def deployment_resume(*, deployment, actor, now=None):
    deployment = _lock(deployment, "resume")
    deployment.status = S.ROLLING_OUT
    deployment.stage_started_at = now or timezone.now()
    deployment.save(update_fields=["status", "stage_started_at", "updated_at"])
    _record(deployment=deployment, actor=actor, verb="deployment.resumed")
    return deployment


@transaction.atomic
def deployment_promote(*, deployment, actor, now=None, reason=""):
    """Advance to the next stage (set-based in_rollout update); the last stage completes it."""
    deployment = _lock(deployment, "promote")
    now = now or timezone.now()
    if deployment.current_stage + 1 < len(deployment.stages):
        deployment.current_stage += 1
    deployment.status = S.ROLLING_OUT
    deployment.stage_started_at = now
    deployment.save(update_fields=["current_stage", "status", "stage_started_at", "updated_at"])
    moved = materialize.set_stage(deployment=deployment, percent=deployment.stage_percent)
    _record(
        deployment=deployment,
        actor=actor,
        verb="deployment.promoted",
        data={"stage": deployment.current_stage, "stage_percent": deployment.stage_percent, "moved": moved, "reason": reason},
    )
    if deployment.stage_percent >= 100:
        _complete(deployment, actor=actor, now=now)
    return deployment


@transaction.atomic
def deployment_rollback(*, deployment, actor, reason="", now=None):
    """Withdraw the deployment; the previous one (if any) wins again for every device at once."""
    deployment = _lock(deployment, "rollback")
    now = now or timezone.now()
    deployment.status = S.ROLLED_BACK
    deployment.status_reason = reason[:500]
    deployment.completed_at = now
    deployment.save(update_fields=["status", "status_reason", "completed_at", "updated_at"])
    previous = deployment.previous_deployment
    if previous is not None and previous.status == S.SUPERSEDED:
        Deployment.objects.filter(pk=previous.pk).update(status=S.COMPLETED, updated_at=now)
        previous.refresh_from_db()
        materialize.set_stage(deployment=previous, percent=100)
    _record(
        deployment=deployment,
        actor=actor,
        verb="deployment.rolled_back",
        data={"reason": reason, "restored_deployment_id": str(previous.id) if previous else None},
    )
    return deployment


@transaction.atomic
def deployment_cancel(*, deployment, actor):
    deployment = _lock(deployment, "cancel")
    deployment.status = S.CANCELLED
    deployment.completed_at = timezone.now()
    deployment.save(update_fields=["status", "completed_at", "updated_at"])
    _record(deployment=deployment, actor=actor, verb="deployment.cancelled")
    return deployment


ACTIONS = {
    "start": deployment_start,
    "pause": deployment_pause,
    "resume": deployment_resume,
    "promote": deployment_promote,
    "rollback": deployment_rollback,
    "cancel": deployment_cancel,
}


# --- keeping assignments exact as devices change -----------------------------------------------------
# Above this many changed devices, whole deployments are re-materialized: the same two statements,
# without a list of ids in the SQL (PostgreSQL takes at most 65,535 parameters in one statement).
REFRESH_BY_ID_MAX = 2000


def assignments_refresh(*, organization, device_ids, only=None):
    """Re-materialize the given devices against every live deployment of the organization
    (registration, label, platform or status changes, group membership, deletions), or those whose
    targeting passes `only`. The loop is over deployments, each one set-based over the devices.
    `device_ids` None: every device of the organization."""
    scope = None
    if device_ids is not None:
        device_ids = list(device_ids)
        if not device_ids:
            return 0
        scope = device_ids if len(device_ids) <= REFRESH_BY_ID_MAX else None
    changed = 0
    deployments = Deployment.objects.filter(
        organization=organization, status__in=(S.ROLLING_OUT, S.PAUSED, S.COMPLETED)
    ).select_related("organization")
    for deployment in deployments:
        if only is not None and not only(deployment.targeting or {}):
            continue
        upserted, deleted = _materialize(deployment, device_ids=scope)
        changed += upserted + deleted
    return changed


def assignments_refresh_for_deployments(*, organization, deployments):
    """Re-materialize whole deployments (a target or group they name changed)."""
    for deployment in deployments:
        if deployment.status in (S.ROLLING_OUT, S.PAUSED, S.COMPLETED):
            _materialize(deployment)


# --- health gates ---------------------------------------------------------------------------------------
def deployment_evaluate(*, deployment, now=None):
    """Roll back a failing stage, or promote a healthy one that has waited long enough."""
    from fleet.activity.services import SYSTEM

    now = now or timezone.now()
    gates = deployment.strategy.get("health_gates") or {}
    progress = deployment_progress(deployment=deployment)
    max_failure_rate = gates.get("max_failure_rate")
    min_reporting = gates.get("min_reporting_devices", 1)
    if (
        max_failure_rate is not None
        and progress["reporting"] >= max(1, min_reporting)
        and progress["failure_rate"] > max_failure_rate
    ):
        reason = (
            f"Failure rate {progress['failure_rate']:.2%} of {progress['reporting']} reporting devices "
            f"exceeded {max_failure_rate:.2%} at stage {deployment.current_stage} ({deployment.stage_percent}%)."
        )
        deployment_rollback(deployment=deployment, actor=SYSTEM, reason=reason, now=now)
        return "rolled_back"
    reason = _routing_gate(deployment=deployment, gates=gates)
    if reason:
        deployment_rollback(deployment=deployment, actor=SYSTEM, reason=reason, now=now)
        return "rolled_back"
    waited = deployment.stage_started_at and now - deployment.stage_started_at >= timedelta(
        seconds=deployment.strategy.get("min_stage_duration_s", 0)
    )
    if deployment.status == S.ROLLING_OUT and deployment.strategy.get("auto_promote") and waited:
        if progress["reporting"] >= min_reporting:
            deployment_promote(deployment=deployment, actor=SYSTEM, now=now, reason="health gates passed")
            return "promoted"
    return None


def _routing_gate(*, deployment, gates):
    """Issue 7: the error rate of routing events that ran the deployment's variant (for its app) since
    the current stage started; a reason to roll back when above `max_routing_error_rate` with at
    least `min_routing_events` events (default 20), else None."""
    max_rate = gates.get("max_routing_error_rate")
    if max_rate is None or deployment.stage_started_at is None:
        return None
    from .routing import variant_error_rate

    events, rate = variant_error_rate(
        organization=deployment.organization_id, variant=deployment.variant_id, since=deployment.stage_started_at,
        app=deployment.app_id,
    )
    if events >= max(1, gates.get("min_routing_events", 20)) and rate > max_rate:
        return (
            f"Routing error rate {rate:.2%} of {events} events of the new variant exceeded {max_rate:.2%} "
            f"at stage {deployment.current_stage} ({deployment.stage_percent}%)."
        )
    return None


def stages_validate(strategy):
    if strategy.get("type", StrategyType.STAGED) == StrategyType.ALL_AT_ONCE:
        return strategy
    stages = strategy.get("stages")
    if stages is None:
        return strategy
    if not stages or stages[-1] != 100 or any(b <= a for a, b in zip(stages, stages[1:], strict=False)):
        raise Invalid("Stages are percents in ascending order ending at 100.", field="strategy.stages")
    return strategy
