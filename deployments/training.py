"""Federated training rounds (seed 003). A round targets the devices of an app (optionally narrowed
by a label selector); while it is open, a targeted device that has not participated sees
`pending_round_id` and a message in its heartbeat (heartbeat provider registered in hooks.py) and in
its sync response."""

from django.db import IntegrityError, transaction
from django.db.models import Case, Count, Max, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from devices.label_selector import matches, selector_q, validate_selector
from devices.models import Platform
from fleet.activity import services as activity
from fleet.activity.models import ActivityEvent
from fleet.errors import Conflict, Invalid
from fleet.tenancy import rls

from .models import (
    TrainingParticipation,
    TrainingRound,
    TrainingRoundOutcome,
    TrainingRoundStatus,
)
from .orchestrator import app_devices

MAX_OPEN_ROUNDS_CHECKED = 20


def _record(*, training_round, actor, verb, data=None, device_id=None):
    activity.record(
        organization=training_round.organization,
        actor=actor,
        verb=verb,
        subject_type="training_round",
        subject_id=training_round.id,
        app_id=training_round.app_id,
        device_id=device_id,
        data={"number": training_round.number, "capability": training_round.capability.key, **(data or {})},
    )


@transaction.atomic
def training_round_create(*, organization, actor, app, capability, target_selector=None, min_participants=1,
                          deadline=None):
    selector = validate_selector(target_selector or {}, field="target_selector", platforms=Platform.values)
    if min_participants < 1:
        raise Invalid("A round needs at least one participant.", field="min_participants")
    if deadline is not None and deadline <= timezone.now():
        raise Invalid("The deadline must be in the future.", field="deadline")
    # Numbers count up per app and capability; the app row lock serializes concurrent creates.
    from apps_catalog.models import App

    App.objects.select_for_update().filter(pk=app.pk).values_list("pk", flat=True).first()
    last = TrainingRound.objects.filter(app=app, capability=capability).aggregate(n=Max("number"))["n"] or 0
    training_round = TrainingRound.objects.create(
        organization=organization,
        app=app,
        capability=capability,
        number=last + 1,
        target_selector=selector,
        min_participants=min_participants,
        deadline=deadline,
        created_by=actor.label,
    )
    training_round.organization = organization
    # Its targets learn about it in their next heartbeat (one set-based UPDATE).
    from devices.label_selector import selector_q
    from devices.services import devices_attention

    devices_attention(organization=organization, queryset=app_devices(organization=organization, app=app).filter(
        selector_q(selector) or Q()))
    _record(training_round=training_round, actor=actor, verb="training_round.created")
    return training_round


@transaction.atomic
def training_round_close(*, training_round, actor):
    training_round = TrainingRound.objects.select_for_update().select_related("capability", "organization").get(
        pk=training_round.pk)
    if training_round.status == TrainingRoundStatus.CLOSED:
        raise Conflict(f"Training round {training_round.number} is already closed.")
    participants = training_round.participations.count()
    training_round.status = TrainingRoundStatus.CLOSED
    training_round.closed_at = timezone.now()
    training_round.outcome = round_outcome(participants=participants, min_participants=training_round.min_participants)
    training_round.save(update_fields=["status", "closed_at", "outcome"])
    _record(training_round=training_round, actor=actor, verb="training_round.closed",
            data={"participants": participants, "outcome": training_round.outcome})
    return training_round


def round_outcome(*, participants, min_participants):
    if participants >= min_participants:
        return TrainingRoundOutcome.COMPLETED
    return TrainingRoundOutcome.INSUFFICIENT_PARTICIPANTS


def _participant_count():
    """Participations of the outer round, as a subquery (0 when none)."""
    count = (TrainingParticipation.objects.filter(round=OuterRef("pk")).order_by().values("round")
             .annotate(n=Count("*")).values("n"))
    return Coalesce(Subquery(count), 0)


def training_rounds_close_expired(*, now=None):
    """Beat: close every open round whose deadline has passed, across organizations, in three statements
    however many rounds (lock and count, update, activity insert). Returns how many were closed."""
    now = now or timezone.now()
    with rls.bypass(reason="close expired training rounds"):
        # skip_locked: a round being closed by hand right now is left to that close.
        rounds = list(
            TrainingRound.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=TrainingRoundStatus.OPEN, deadline__lte=now)
            .annotate(participant_count=_participant_count())
            .values("id", "organization_id", "app_id", "number", "capability__key", "min_participants",
                    "participant_count")
        )
        if not rounds:
            return 0
        for row in rounds:
            row["outcome"] = round_outcome(participants=row["participant_count"],
                                           min_participants=row["min_participants"])
        completed = [row["id"] for row in rounds if row["outcome"] == TrainingRoundOutcome.COMPLETED]
        TrainingRound.objects.filter(pk__in=[row["id"] for row in rounds]).update(
            status=TrainingRoundStatus.CLOSED,
            closed_at=now,
            outcome=Case(When(pk__in=completed, then=Value(TrainingRoundOutcome.COMPLETED)),
                         default=Value(TrainingRoundOutcome.INSUFFICIENT_PARTICIPANTS)),
        )
        ActivityEvent.objects.bulk_create(
            ActivityEvent(
                organization_id=row["organization_id"],
                actor_type=activity.SYSTEM.type,
                actor_label=activity.SYSTEM.label,
                verb="training_round.closed",
                subject_type="training_round",
                subject_id=str(row["id"]),
                app_ref=row["app_id"],
                data={"number": row["number"], "capability": row["capability__key"],
                      "participants": row["participant_count"], "outcome": row["outcome"], "reason": "deadline"},
                created_at=now,
            )
            for row in rounds
        )
    return len(rounds)


def is_open(training_round, now=None):
    now = now or timezone.now()
    return training_round.status == TrainingRoundStatus.OPEN and (
        training_round.deadline is None or training_round.deadline > now
    )


def round_targets(*, training_round, device):
    """Is the device one of the round's targets (a device of its app matching the selector)?"""
    devices = app_devices(organization=training_round.organization, app=training_round.app)
    return devices.filter(pk=device.pk).filter(selector_q(training_round.target_selector)).exists()


@transaction.atomic
def participation_submit(*, training_round, device, actor, num_samples=0, metrics=None, update=None):
    """Record (or replace: idempotent per device) a device's update metadata. Returns (row, created)."""
    # The row lock orders this against a close (manual or sweep), so its count includes this row.
    training_round = TrainingRound.objects.select_for_update(of=("self",), no_key=True).select_related(
        "capability", "organization", "app").get(pk=training_round.pk)
    if not is_open(training_round):
        raise Conflict(f"Training round {training_round.number} is closed.", fields={"round": ["Closed."]})
    if not round_targets(training_round=training_round, device=device):
        raise Invalid("This device is not a target of the round.", field="device_id")
    now = timezone.now()
    values = {"num_samples": num_samples, "metrics": metrics or {}, "update": update or {}, "submitted_at": now}
    existing = TrainingParticipation.objects.filter(round=training_round, device=device).first()
    if existing is not None:
        TrainingParticipation.objects.filter(pk=existing.pk).update(**values)
        existing.refresh_from_db()
        return existing, False
    try:
        with transaction.atomic():
            participation = TrainingParticipation.objects.create(
                organization_id=training_round.organization_id, round=training_round, device=device, **values
            )
    except IntegrityError:  # a concurrent replay won
        return TrainingParticipation.objects.get(round=training_round, device=device), False
    _record(training_round=training_round, actor=actor, verb="training_round.participated",
            data={"device_id": device.device_id, "num_samples": num_samples}, device_id=device.id)
    return participation, True


def pending_round(*, device, organization, now=None):
    """{"pending_round_id", "message"} for the oldest open round targeting the device that it has not
    answered, else {}. Two queries: the candidate rounds, then app membership for them."""
    now = now or timezone.now()
    rounds = list(
        TrainingRound.objects.filter(organization=organization, status=TrainingRoundStatus.OPEN)
        .exclude(deadline__lte=now)
        .exclude(participations__device=device)
        .select_related("app")
        .order_by("created_at", "id")[:MAX_OPEN_ROUNDS_CHECKED]
    )
    rounds = [r for r in rounds if matches(r.target_selector, labels=device.labels or {}, platform=device.platform)]
    if not rounds:
        return {}
    member_of = set()
    for app in {r.app_id: r.app for r in rounds}.values():
        if app_devices(organization=organization, app=app).filter(pk=device.pk).exists():
            member_of.add(app.id)
    for training_round in rounds:
        if training_round.app_id in member_of:
            return {
                "pending_round_id": str(training_round.id),
                "message": f"Training round {training_round.number} is awaiting your participation.",
            }
    return {}


def heartbeat_pending_round(*, device, organization):
    """Heartbeat provider (devices.registry)."""
    return pending_round(device=device, organization=organization)


def training_round_queryset(*, organization):
    return (
        TrainingRound.objects.filter(organization=organization)
        .select_related("app", "capability")
        .annotate(participant_count=_participant_count())
        .order_by("-created_at", "id")
    )


def participation_queryset(*, training_round):
    return (
        TrainingParticipation.objects.filter(organization_id=training_round.organization_id, round=training_round)
        .select_related("device")
        .order_by("submitted_at", "id")
    )
