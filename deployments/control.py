"""The device control loop: desired state, observed state and drift, sync, commands as directives.

Each function runs a fixed number of queries however many deployments exist: winning assignments
come from one query, slots and inference configs from one each, the per-device state row from one.
"""

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps_catalog.models import CapabilitySlot, InferenceConfig
from devices import registry as device_registry
from devices import services as device_services
from devices.models import Device, DeviceStatus
from fleet.activity import services as activity
from fleet.api.serializers import iso
from fleet.db import JoinedRead, Table
from fleet.errors import Invalid
from fleet.tenancy import rls

from .models import AssignmentStatus, CommandStatus, DesiredGeneration, DeviceAssignment, DeviceCommand, DeviceState
from .selectors import winning_assignments

COMMAND_TTL_DEFAULT_S = 3600
COMMAND_TTL_MAX_S = 7 * 86400


def _model_entry(assignment):
    deployment = assignment.deployment
    variant = assignment.variant  # bindings applied (selectors.winning_assignments)
    return {
        "capability": deployment.capability.key,
        "model": variant.model.name,
        "variant_id": str(variant.id),
        "version": variant.version,
        "format": variant.format,
        "artifact_url": variant.artifact_url,
        "sha256": variant.sha256,
        "size_bytes": variant.size_bytes,
        "deployment_id": str(deployment.id),
    }


def _inference_config(config):
    return {
        "cloud_endpoint_url": config.cloud_endpoint_url,
        "default_routing": config.default_routing,
        "timeout_ms": config.timeout_ms,
        "max_retries": config.max_retries,
        "fallback_order": config.fallback_order,
    }


def _content(*, device, organization, winners):
    app_ids = {w.deployment.app_id for w in winners if w.deployment.app_id}
    serving = {}
    inference = None
    if app_ids:
        for slot in CapabilitySlot.objects.filter(organization=organization, app_id__in=app_ids).select_related("capability"):
            serving[slot.capability.key] = slot.serving_policy
        config = InferenceConfig.objects.filter(organization=organization, app_id__in=app_ids).order_by("app_id").first()
        inference = _inference_config(config) if config else None
    apps = sorted({w.deployment.app.slug for w in winners if w.deployment.app_id})
    return {
        "device_id": str(device.id),
        "binding": {"app": apps[0] if apps else None, "deployments": sorted(str(w.deployment_id) for w in winners)},
        "models": [_model_entry(w) for w in winners],
        "policy": {"serving": serving, "inference": inference, "heartbeat_interval_s": device.heartbeat_interval_s},
    }


# Every poll. The organization's generation is read here, before any input of the content: a change
# committed after this read leaves the stored generation behind (deployments.freshness).
STATE_READ = JoinedRead(
    Table("s", DeviceState),
    Table("g", DesiredGeneration, on="g.org_id = s.org_id", outer=True),
    where="s.device_id = %s",
    params=[("s", "device")],
)


def device_fingerprint(device):
    """The device's own inputs of its desired state; _steady_sql computes the same from the row."""
    return f"{device.heartbeat_interval_s}:{device.platform}"


def _state(*, device, organization):
    """(state row, the organization's generation), the generation read first."""
    row = next(iter(STATE_READ.fetch([device.id])), None)
    if row is None:  # the device's first poll
        stored = DesiredGeneration.objects.filter(organization=organization).values_list("value", flat=True)
        generation = stored.first() or 0
        state, _ = DeviceState.objects.get_or_create(device=device, defaults={"organization": organization})
        return state, generation
    state, generation = row
    return state, generation.value if generation else 0


@transaction.atomic(savepoint=False)  # hot path (every poll): joins the request's transaction, no SAVEPOINT
def desired_state(*, device, organization, now=None):
    """(desired state dict, winners, state row). The revision increases only when content changes."""
    state, generation = _state(device=device, organization=organization)
    winners = winning_assignments(organization=organization, device_ids=[device.id]).get(device.id, [])
    content = _content(device=device, organization=organization, winners=winners)
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    changed = {}
    if state.content_hash != digest:
        changed.update(revision=state.revision + 1, content_hash=digest)
    fingerprint = device_fingerprint(device)
    if (state.generation, state.device_fingerprint) != (generation, fingerprint):
        changed.update(generation=generation, device_fingerprint=fingerprint)
    if changed:
        for name, value in changed.items():
            setattr(state, name, value)
        DeviceState.objects.filter(pk=state.pk).update(**changed)
    generated_at = now or timezone.now()
    return {"revision": state.revision, **content, "generated_at": generated_at}, winners, state


@functools.cache
def _steady_sql():
    quote = connection.ops.quote_name
    device, state = quote(Device._meta.db_table), quote(DeviceState._meta.db_table)
    generation = quote(DesiredGeneration._meta.db_table)
    return f"""
        SELECT d.id, s.revision, s.drift, s.drifted::text, d.heartbeat_interval_s, d.attention, d.device_id,
               s.org_id, s.generation
        FROM token
        JOIN {device} d ON d.id = token.device_id
        JOIN {state} s ON s.device_id = d.id
        LEFT JOIN {generation} g ON g.org_id = s.org_id
        WHERE (d.device_id = %(device_ref)s OR d.id = %(device_uuid)s::uuid) AND d.status <> %(revoked)s
          AND s.generation = COALESCE(g.value, 0)
          AND s.device_fingerprint = d.heartbeat_interval_s::text || ':' || d.platform
    """


# devices.presence publishes every organization's generation under this name + its id, at each flush;
# a DESIRED lease answers only while its own generation is the published one.
PUBLISHED_GENERATION = "generation:"


def published_generations():
    """The presence publisher (runs inside the flush, across organizations)."""
    return {f"{PUBLISHED_GENERATION}{org_id}": value
            for org_id, value in DesiredGeneration.objects.values_list("organization_id", "value")}


@dataclass(frozen=True)
class Steady:
    device_id: uuid.UUID
    revision: int
    drift: bool
    drifted: list
    heartbeat_interval_s: int
    attention: bool
    device_ref: str  # the device's user-chosen identifier
    organization_id: uuid.UUID
    generation: int  # the organization's, which the revision was computed at or checked against

    def lease(self):
        """What devices.presence stores of it (a `DESIRED` lease)."""
        return {"device": self.device_id, "ref": self.device_ref, "org": self.organization_id,
                "generation": self.generation, "revision": self.revision, "drift": self.drift,
                "drifted": self.drifted, "interval": self.heartbeat_interval_s, "attention": self.attention}


def desired_state_steady(*, secret_hash, device_ref, now):
    """The stored revision, drift and policy of the token's device, when nothing its desired state is
    computed from has changed since (deployments.freshness): two statements, the credential function
    and one SELECT (PostgreSQL). None when desired_state must run: any other database, a change, a
    device never computed, an unknown token or device."""
    if not rls.is_postgres():
        return None
    row = device_services.device_token_steady(
        secret_hash=secret_hash, device_ref=device_ref, now=now, sql=_steady_sql(),
        params={"revoked": DeviceStatus.REVOKED.value},
    )
    if row is None:
        return None
    device_id, revision, drift, drifted, interval, attention, device_ref, org_id, generation = row
    return Steady(device_id, revision, drift, json.loads(drifted), interval, bool(attention), device_ref, org_id,
                  generation)


def _drift(*, winners, observed):
    """Capabilities whose desired variant is not installed/active on the device."""
    running = {
        str(m.get("variant_id")): m.get("status")
        for m in observed
        if m.get("status") in (AssignmentStatus.INSTALLED, AssignmentStatus.ACTIVE)
    }
    drifted = []
    for winner in winners:
        desired = str(winner.variant.id)
        if desired not in running:
            observed_variant = next(
                (str(m.get("variant_id")) for m in observed if str(m.get("variant_id")) != desired), None
            )
            drifted.append({"capability": winner.deployment.capability.key, "desired": desired, "observed": observed_variant})
    return drifted


@transaction.atomic(savepoint=False)  # hot path (syncs that report): joins the request's transaction
def observed_state_apply(*, device, organization, actor, revision, models, now=None):
    """Record what the device runs: assignment statuses, drift (with start/end events).
    A report older than one already applied changes nothing."""
    now = now or timezone.now()
    desired, winners, state = desired_state(device=device, organization=organization, now=now)
    if revision is not None and revision < state.observed_revision:
        return {"drift": state.drift, "drifted": state.drifted, "revision": state.revision, "stale": True}

    by_variant = {str(m["variant_id"]): m for m in models}
    for winner in winners:
        report = by_variant.get(str(winner.variant.id))
        if report and (winner.status != report["status"] or winner.error != (report.get("error") or "")):
            DeviceAssignment.objects.filter(pk=winner.pk).update(
                status=report["status"], error=(report.get("error") or "")[:1000], updated_at=now
            )
    drifted = _drift(winners=winners, observed=models)
    drift = bool(drifted)
    if drift != state.drift:
        activity.record(
            organization=organization,
            actor=actor,
            verb="device.drift_started" if drift else "device.drift_ended",
            subject_type="device",
            subject_id=device.id,
            device_id=device.id,
            data={"drifted": drifted},
        )
    DeviceState.objects.filter(pk=state.pk).update(
        observed_revision=max(revision or 0, state.observed_revision),
        observed_models=models,
        drift=drift,
        drifted=drifted,
        observed_at=now,
    )
    return {"drift": drift, "drifted": drifted, "revision": state.revision, "stale": False}


# --- commands ---------------------------------------------------------------------------------------------
@transaction.atomic
def command_create(*, device, organization, actor, type, payload=None, expires_in_s=None):
    expires_in_s = COMMAND_TTL_DEFAULT_S if expires_in_s is None else expires_in_s
    if not 1 <= expires_in_s <= COMMAND_TTL_MAX_S:
        raise Invalid(f"expires_in_s must be between 1 and {COMMAND_TTL_MAX_S}.", field="expires_in_s")
    command = DeviceCommand.objects.create(
        organization=organization,
        device=device,
        type=type,
        payload=payload or {},
        created_by=actor.label,
        expires_at=timezone.now() + timedelta(seconds=expires_in_s),
    )
    device_services.devices_attention(organization=organization, device_ids=[device.id])
    activity.record(
        organization=organization,
        actor=actor,
        verb="device.command_queued",
        subject_type="device",
        subject_id=device.id,
        device_id=device.id,
        data={"command_id": str(command.id), "type": type},
    )
    return command


def _pending(device, now):
    return DeviceCommand.objects.filter(
        device=device, status__in=(CommandStatus.QUEUED, CommandStatus.DELIVERED), expires_at__gt=now
    )


def directives_deliver(*, device, now=None):
    """Every unexpired, unacknowledged command as a directive; delivered until acknowledged."""
    now = now or timezone.now()
    commands = list(_pending(device, now).order_by("created_at", "id"))
    queued = [c.pk for c in commands if c.status == CommandStatus.QUEUED]
    if queued:
        DeviceCommand.objects.filter(pk__in=queued).update(status=CommandStatus.DELIVERED, delivered_at=now)
    return [
        {"id": str(c.id), "type": c.type, "payload": c.payload, "expires_at": iso(c.expires_at)}
        for c in commands
    ]


def directives_ack(*, device, command_ids, now=None):
    if not command_ids:
        return 0
    return DeviceCommand.objects.filter(
        device=device, id__in=command_ids, status__in=(CommandStatus.QUEUED, CommandStatus.DELIVERED)
    ).update(status=CommandStatus.ACKED, acked_at=now or timezone.now())


def commands_expire(*, now=None):
    """Beat: mark what nobody acknowledged in time (set-based, across organizations)."""
    now = now or timezone.now()
    with rls.bypass(reason="expire device commands"):
        return DeviceCommand.objects.filter(
            Q(status=CommandStatus.QUEUED) | Q(status=CommandStatus.DELIVERED), expires_at__lte=now
        ).update(status=CommandStatus.EXPIRED)


# --- sync --------------------------------------------------------------------------------------------------
@transaction.atomic(savepoint=False)  # hot path (every poll): joins the request's transaction, no SAVEPOINT
def device_sync(*, device, organization, actor, known_revision=None, observed_state=None, inventory=None,
                acked_directives=None, now=None):
    """Seed 000's unified call: report, acknowledge, and receive desired state and directives."""
    now = now or timezone.now()
    if inventory:
        device_services.device_inventory_update(device=device, actor=actor, inventory=inventory)
    directives_ack(device=device, command_ids=acked_directives or [], now=now)
    if observed_state is not None:
        drift = observed_state_apply(
            device=device, organization=organization, actor=actor,
            revision=observed_state.get("revision"), models=observed_state.get("models") or [], now=now,
        )
        desired, _, state = desired_state(device=device, organization=organization, now=now)
    else:
        desired, _, state = desired_state(device=device, organization=organization, now=now)
        drift = {"drift": state.drift, "drifted": state.drifted}
    unchanged = known_revision is not None and known_revision == state.revision
    response = {
        "unchanged": unchanged,
        "revision": state.revision,
        "drift": {"drift": drift["drift"], "drifted": drift["drifted"]},
        "next_sync_in_s": device.heartbeat_interval_s,
        # Directives and a pending training round, exactly as heartbeat delivers them: the providers
        # run only for a device flagged with `attention`, so an ordinary sync costs no query for them.
        **device_registry.heartbeat_contributions(device=device, organization=organization),
    }
    if not unchanged:
        response["desired_state"] = desired
    return response
