from dataclasses import dataclass

from django.utils import timezone

from fleet.activity.models import ActivityEvent, ActorType


@dataclass(frozen=True)
class Actor:
    type: str
    id: str = ""
    label: str = ""


SYSTEM = Actor(type=ActorType.SYSTEM, label="system")


def record(*, organization, actor, verb, subject_type, subject_id, data=None, app_id=None, device_id=None, at=None):
    """Append an event to the organization's feed (inside the caller's transaction)."""
    return ActivityEvent.objects.create(
        organization=organization,
        actor_type=actor.type,
        actor_id=str(actor.id or ""),
        actor_label=actor.label[:200],
        verb=verb,
        subject_type=subject_type,
        subject_id=str(subject_id),
        app_ref=app_id,
        device_ref=device_id,
        data=data or {},
        created_at=at or timezone.now(),
    )
