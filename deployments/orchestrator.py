"""Capability orchestration (seed 004's CapabilityOrchestratorService): capability profiles, preview,
enable, check-optimization, optimize, and slot coverage health.

Every public step is one transaction. Fleet-wide numbers come from aggregate SQL over the stored
capability profiles (one grouped query for all variants of a capability); only devices that have no
profile yet are classified inline in Python (bounded by INLINE_PROFILE_MAX). Writes go through the
existing services: apps_catalog.services.capability_slot_set for the slot and
deployments.services.deployment_create / deployment_start for the rollout (set-based
materialization), so enable returns quickly for large fleets without a background job.
"""

import json
from collections import defaultdict

from django.db import transaction
from django.db.models import Count, F
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from apps_catalog import services as catalog_services
from apps_catalog.models import App, AppTarget, CapabilitySlot, ModelVariant, Routing
from apps_catalog.selectors import visible_to
from devices.models import Device
from fleet.errors import Conflict

from . import services
from .classifier import CLASSIFIER_VERSION, device_facts, score_variant, weights
from .materialize import ELIGIBLE_STATUSES
from .models import (
    DEFAULT_STAGES,
    LIVE_STATUSES,
    AssignmentStatus,
    CapabilityProfile,
    Deployment,
    DeploymentStatus,
    DeviceAssignment,
    StrategyType,
)

PROFILE_BATCH = 500
INLINE_PROFILE_MAX = 5000
RUNNING_STATUSES = (DeploymentStatus.ROLLING_OUT, DeploymentStatus.PAUSED)
COVERED_STATUSES = (AssignmentStatus.INSTALLED, AssignmentStatus.ACTIVE)
HEALTHY_COVERAGE = 0.95
DEFAULT_SERVING_POLICY = {"routing": Routing.LOCAL_FIRST, "fallback": True, "max_latency_ms": None, "min_quality": None}
OPTIMIZE_GATES = {"max_failure_rate": 0.05, "min_reporting_devices": 1, "max_routing_error_rate": 0.05,
                  "min_routing_events": 20}


# --- the app's fleet (one place) -------------------------------------------------------------------------
def app_devices(*, organization, app):
    """The devices of an app that can hold assignments: those linked to one of its targets
    (Device.app_target), exactly what `app_targeting` reaches. This function, `app_targeting` and
    `app_device_fields` are the only places that know how devices belong to apps."""
    return Device.objects.filter(organization=organization, status__in=ELIGIBLE_STATUSES, app_target__app=app)


def app_device_fields(*, app, target):
    """The Device fields that make a device one of `app`'s (registration through its SDK; tests)."""
    return {"app": app, "app_target": target}


def app_targeting(*, organization, app, require=False):
    """Deployment targeting naming every device of the app (all its targets). With `require`, an app
    without targets is a 409 (nothing could ever be assigned)."""
    ids = [str(i) for i in AppTarget.objects.filter(organization=organization, app=app).values_list("id", flat=True)]
    if require and not ids:
        raise Conflict("The app has no targets: register one (POST /apps/{slug}/targets) first.")
    return {"app_target_ids": ids}


# --- capability profiles ---------------------------------------------------------------------------------
def _variants(*, organization, capability=None):
    variants = ModelVariant.objects.filter(visible_to(organization)).select_related("model__capability")
    if capability is not None:
        variants = variants.filter(model__capability=capability)
    return list(variants.order_by("model__name", "name", "version", "id"))


def _scores(facts, variants):
    return {
        str(v.id): {
            "capability": v.model.capability.key,
            **score_variant(
                device_class=facts["device_class"],
                platform=facts["platforms"],
                ram_mb=facts["ram_mb"],
                accelerators=facts["accelerators"],
                variant=v,
            ),
        }
        for v in variants
    }


def _profiles(rows, variants):
    """Yield (device id, device class, scores); identical inventories are scored once."""
    cache = {}
    for device_id, platform, capabilities, hardware, os_name in rows:
        facts = device_facts(platform=platform, capabilities=capabilities, hardware=hardware, os_name=os_name)
        key = (facts["device_class"], frozenset(facts["platforms"]), facts["ram_mb"], frozenset(facts["accelerators"]))
        if key not in cache:
            cache[key] = _scores(facts, variants)
        yield device_id, facts["device_class"], cache[key]


def _flush(batch):
    if batch:
        CapabilityProfile.objects.bulk_create(
            batch,
            update_conflicts=True,
            unique_fields=["device"],
            update_fields=["device_class", "scores", "classifier_version", "computed_at"],
        )


@transaction.atomic
def profiles_refresh(*, organization, device_ids=None):
    """(Re)compute the capability profiles of the organization's devices (all, or `device_ids`)
    against every catalog variant it can see; upserted in batches of PROFILE_BATCH rows.
    Returns how many profiles were written."""
    variants = _variants(organization=organization)
    devices = Device.objects.filter(organization=organization).order_by("pk")
    if device_ids is not None:
        devices = devices.filter(id__in=list(device_ids))
    rows = devices.values_list("id", "platform", "capabilities", "hardware", "os_name").iterator(chunk_size=2000)
    now = timezone.now()
    batch, written = [], 0
    for device_id, device_class, scores in _profiles(rows, variants):
        batch.append(
            CapabilityProfile(
                organization_id=organization.id,
                device_id=device_id,
                device_class=device_class,
                scores=scores,
                classifier_version=CLASSIFIER_VERSION,
                computed_at=now,
            )
        )
        if len(batch) >= PROFILE_BATCH:
            _flush(batch)
            written += len(batch)
            batch = []
    _flush(batch)
    return written + len(batch)


def profile_queryset(*, organization, device_class=None, variant=None, compatible=None):
    profiles = CapabilityProfile.objects.filter(organization=organization).select_related("device")
    if device_class:
        profiles = profiles.filter(device_class=device_class)
    if variant:
        profiles = profiles.filter(scores__has_key=str(variant))
        if compatible is not None:
            profiles = profiles.filter(**{f"scores__{variant}__compatible": compatible})
    return profiles.order_by("device__device_id", "pk")


# --- fleet statistics ------------------------------------------------------------------------------------
def _fleet_stats(*, organization, app, variants):
    """{device_class: {"devices": n, "variants": {vid: {compatible, score_sum, latency_sum, latency_n}}}}
    over the app's devices: one grouped query over stored profiles + inline scoring of the rest."""
    devices = app_devices(organization=organization, app=app)
    stats = defaultdict(lambda: {"devices": 0, "variants": defaultdict(lambda: dict.fromkeys(
        ("compatible", "score_sum", "latency_sum", "latency_n"), 0))})
    profiled = 0
    # Devices with the same inventory share identical score objects: group by class and the
    # capability's per-variant score objects (a handful of groups), then add them up in Python.
    columns = {f"v{i}": KeyTransform(str(v.id), "scores") for i, v in enumerate(variants)}
    rows = (
        CapabilityProfile.objects.filter(organization=organization, device__in=devices)
        .annotate(**columns)
        .values("device_class", *columns)
        .annotate(total=Count("pk"))
        .order_by()
    )
    for row in rows:
        n = row["total"]
        entry = stats[row["device_class"]]
        entry["devices"] += n
        profiled += n
        for i, v in enumerate(variants):
            score = row[f"v{i}"]
            if isinstance(score, str):  # SQLite hands nested JSON back as text
                score = json.loads(score)
            if not score or not score.get("compatible"):
                continue
            bucket = entry["variants"][str(v.id)]
            bucket["compatible"] += n
            bucket["score_sum"] += n * float(score.get("score") or 0.0)
            if score.get("predicted_latency_ms") is not None:
                bucket["latency_sum"] += n * float(score["predicted_latency_ms"])
                bucket["latency_n"] += n
    unprofiled = devices.filter(capability_profile__isnull=True).order_by("pk")
    inline = unprofiled.values_list("id", "platform", "capabilities", "hardware", "os_name")[:INLINE_PROFILE_MAX]
    for _, device_class, scores in _profiles(inline, variants):
        entry = stats[device_class]
        entry["devices"] += 1
        for vid, score in scores.items():
            if score["compatible"]:
                bucket = entry["variants"][vid]
                bucket["compatible"] += 1
                bucket["score_sum"] += score["score"]
                if score["predicted_latency_ms"] is not None:
                    bucket["latency_sum"] += score["predicted_latency_ms"]
                    bucket["latency_n"] += 1
    return stats, profiled


def _variant_ref(variant):
    if variant is None:
        return None
    return {
        "variant_id": str(variant.id),
        "name": variant.name,
        "version": variant.version,
        "model": variant.model.name,
        "format": variant.format,
        "quantization": variant.quantization,
        "quality_score": variant.quality_score,
        "size_bytes": variant.size_bytes,
    }


def _rank(variant, total_score):
    # Highest fleet score, then quality, then the smaller artifact, then a stable id.
    return (-round(total_score, 6), -(variant.quality_score or 0), variant.size_bytes or 0, str(variant.id))


def plan(*, organization, app, capability, environment):
    """The preview: what enable would do (no writes). See docs/orchestration.md for the shape."""
    variants = _variants(organization=organization, capability=capability)
    stats, profiled = _fleet_stats(organization=organization, app=app, variants=variants)
    total = sum(entry["devices"] for entry in stats.values())
    comparison = []
    for v in variants:
        vid = str(v.id)
        compatible = sum(entry["variants"][vid]["compatible"] for entry in stats.values())
        score_sum = sum(entry["variants"][vid]["score_sum"] for entry in stats.values())
        latency_sum = sum(entry["variants"][vid]["latency_sum"] for entry in stats.values())
        latency_n = sum(entry["variants"][vid]["latency_n"] for entry in stats.values())
        comparison.append({
            **_variant_ref(v),
            "compatible_devices": compatible,
            "coverage": round(compatible / total, 4) if total else 0.0,
            "mean_score": round(score_sum / compatible, 4) if compatible else 0.0,
            "fleet_score": round(score_sum / total, 4) if total else 0.0,
            "expected_latency_ms": round(latency_sum / latency_n, 2) if latency_n else None,
            "_variant": v,
            "_score_sum": score_sum,
        })
    if total:
        ranked = sorted(comparison, key=lambda c: _rank(c["_variant"], c["_score_sum"]))
        chosen = ranked[0] if ranked and ranked[0]["compatible_devices"] else None
    else:  # no devices yet: the best catalog quality, smallest artifact
        ranked = sorted(comparison, key=lambda c: _rank(c["_variant"], 0.0))
        chosen = ranked[0] if ranked else None

    bindings, uncovered = [], []
    by_class = []
    for device_class in sorted(stats):
        entry = stats[device_class]
        by_class.append({"device_class": device_class, "devices": entry["devices"]})
        if chosen is None:
            uncovered.append({"device_class": device_class, "devices": entry["devices"]})
            continue
        chosen_n = entry["variants"][chosen["variant_id"]]["compatible"]
        best_vid, best_sum, best_n = chosen["variant_id"], entry["variants"][chosen["variant_id"]]["score_sum"], chosen_n
        if chosen_n < entry["devices"]:
            for c in ranked:
                bucket = entry["variants"][c["variant_id"]]
                if bucket["compatible"] > best_n or (bucket["compatible"] == best_n and bucket["score_sum"] > best_sum):
                    best_vid, best_sum, best_n = c["variant_id"], bucket["score_sum"], bucket["compatible"]
        if best_vid != chosen["variant_id"]:
            bindings.append({"device_class": device_class, "variant_id": best_vid, "devices": entry["devices"],
                             "compatible_devices": best_n})
        if entry["devices"] - best_n:
            uncovered.append({"device_class": device_class, "devices": entry["devices"] - best_n})

    bound = sum(b["devices"] for b in bindings)
    by_variant = defaultdict(int)
    if chosen is not None and total - bound:
        by_variant[chosen["variant_id"]] += total - bound
    for b in bindings:
        by_variant[b["variant_id"]] += b["devices"]
    reason = None
    if chosen is not None:
        reason = (
            f"Highest fleet score {chosen['fleet_score']:.4f}: compatible with {chosen['compatible_devices']} of "
            f"{total} devices, mean score {chosen['mean_score']:.4f}"
            + (f", expected latency {chosen['expected_latency_ms']} ms." if chosen["expected_latency_ms"] is not None else ".")
            if total else "No devices yet: the highest-quality variant of the catalog."
        )
    for c in comparison:
        c.pop("_score_sum")
    return {
        "app": app.slug,
        "capability": capability.key,
        "environment": environment,
        "recommended": ({**{k: v for k, v in chosen.items() if not k.startswith("_")}, "reason": reason}
                        if chosen else None),
        "_recommended_variant": chosen["_variant"] if chosen else None,
        "fleet": {"devices": total, "profiled": profiled, "by_device_class": by_class},
        "variants": [{k: v for k, v in c.items() if not k.startswith("_")}
                     for c in sorted(comparison, key=lambda c: (-c["fleet_score"], c["variant_id"]))],
        "bindings": bindings,
        "assignments": {
            "targeting": app_targeting(organization=organization, app=app),
            "total": total if chosen else 0,
            "by_variant": [{"variant_id": vid, "devices": n} for vid, n in sorted(by_variant.items())],
        },
        "uncovered": {"devices": sum(u["devices"] for u in uncovered), "by_device_class": uncovered},
    }


def _bindings(result):
    """The plan's per-device-class choices as deployment/slot bindings."""
    return {b["device_class"]: b["variant_id"] for b in result["bindings"]}


def _public(result):
    return {k: v for k, v in result.items() if not k.startswith("_")}


def capability_preview(*, organization, app, capability, environment):
    """Side-effect free: runs in a transaction that is always rolled back."""
    with transaction.atomic():
        result = plan(organization=organization, app=app, capability=capability, environment=environment)
        transaction.set_rollback(True)
    return _public(result)


# --- enable / check-optimization / optimize -------------------------------------------------------------------
def _scope(*, organization, app, capability, environment):
    return Deployment.objects.filter(organization=organization, app=app, capability=capability, environment=environment)


def _lock_app(app):
    App.objects.select_for_update().filter(pk=app.pk).values_list("pk", flat=True).first()


def _refuse_running(*, organization, app, capability, environment):
    running = _scope(organization=organization, app=app, capability=capability, environment=environment).filter(
        status__in=RUNNING_STATUSES
    ).first()
    if running is not None:
        raise Conflict(
            f"A {running.status} deployment ({running.id}) already exists for {capability.key} in {environment}.",
            fields={"environment": [f"Deployment {running.id} is {running.status}."]},
        )


@transaction.atomic
def capability_enable(*, organization, app, capability, environment, actor):
    """Resolve the best variant, write the slot (with per-device-class bindings), create and start a
    deployment targeting all the app's devices. Returns {created, deployment, slot, plan}.

    Re-enabling an environment whose deployment already completed changes nothing (created=False);
    a rolling or paused one is a 409. Use optimize to move to a better variant.
    """
    _lock_app(app)
    _refuse_running(organization=organization, app=app, capability=capability, environment=environment)
    targeting = app_targeting(organization=organization, app=app, require=True)
    existing = _scope(organization=organization, app=app, capability=capability, environment=environment).filter(
        status=DeploymentStatus.COMPLETED
    ).order_by("-completed_at").first()
    slot = CapabilitySlot.objects.filter(organization=organization, app=app, capability=capability).first()
    if existing is not None:
        return {"created": False, "deployment": existing, "slot": slot, "plan": None}
    result = plan(organization=organization, app=app, capability=capability, environment=environment)
    variant = result["_recommended_variant"]
    if variant is None:
        raise Conflict(f"No catalog variant of {capability.key} is compatible with this app's devices.")
    bindings = _bindings(result)
    slot, _ = catalog_services.capability_slot_set(
        app=app,
        capability=capability,
        variant_id=variant.id,
        serving_policy=slot.serving_policy if slot is not None else DEFAULT_SERVING_POLICY,
        bindings=bindings,
        actor=actor,
    )
    deployment = services.deployment_create(
        organization=organization,
        actor=actor,
        app=app,
        capability=capability,
        variant=variant,
        environment=environment,
        targeting=targeting,
        strategy={"type": StrategyType.ALL_AT_ONCE},
        bindings=bindings,
    )
    deployment = services.deployment_start(deployment=deployment, actor=actor)
    return {"created": True, "deployment": deployment, "slot": slot, "plan": _public(result)}


def _current(*, organization, app, capability, environment):
    deployment = (
        _scope(organization=organization, app=app, capability=capability, environment=environment)
        .filter(status__in=LIVE_STATUSES)
        .select_related("variant__model")
        .order_by(F("started_at").desc(nulls_last=True), "-created_at")
        .first()
    )
    if deployment is not None:
        return deployment, deployment.variant
    slot = CapabilitySlot.objects.filter(organization=organization, app=app, capability=capability).select_related(
        "variant__model"
    ).first()
    return None, slot.variant if slot is not None else None


def _check(*, organization, app, capability, environment):
    deployment, current = _current(organization=organization, app=app, capability=capability, environment=environment)
    result = plan(organization=organization, app=app, capability=capability, environment=environment)
    rows = {row["variant_id"]: row for row in result["variants"]}
    recommended = result["_recommended_variant"]
    cur = rows.get(str(current.id)) if current is not None else None
    rec = rows.get(str(recommended.id)) if recommended is not None else None
    improvement = {"score": None, "latency_ms": None, "quality": None}
    better = False
    if rec is not None:
        if cur is None:
            better = current is None
        else:
            improvement = {
                "score": round(rec["fleet_score"] - cur["fleet_score"], 4),
                "latency_ms": (round(cur["expected_latency_ms"] - rec["expected_latency_ms"], 2)
                               if cur["expected_latency_ms"] is not None and rec["expected_latency_ms"] is not None
                               else None),
                "quality": round((recommended.quality_score or 0) - (current.quality_score or 0), 4),
            }
            better = rec["variant_id"] != cur["variant_id"] and improvement["score"] >= weights()["min_improvement"]
    return {
        "current": ({**_variant_ref(current), **({k: cur[k] for k in ("compatible_devices", "fleet_score", "expected_latency_ms")} if cur else {})}
                    if current is not None else None),
        "recommended": rec,
        "better": better,
        "expected_improvement": improvement,
        "devices_affected": rec["compatible_devices"] if better and rec else 0,
        "deployment_id": str(deployment.id) if deployment is not None else None,
        "_recommended_variant": recommended,
        "_bindings": _bindings(result),
        "_current_variant": current,
    }


def capability_check_optimization(*, organization, app, capability, environment):
    """Compare the deployed variant with the alternatives for the current fleet (no writes)."""
    with transaction.atomic():
        result = _check(organization=organization, app=app, capability=capability, environment=environment)
        transaction.set_rollback(True)
    return _public(result)


@transaction.atomic
def capability_optimize(*, organization, app, capability, environment, actor, stages=None):
    """Start a staged (canary) rollout to the better variant; 409 when not enabled, when a rollout is
    running, or when nothing is better. Health gates: OPTIMIZE_GATES (routing error rate included)."""
    _lock_app(app)
    _refuse_running(organization=organization, app=app, capability=capability, environment=environment)
    targeting = app_targeting(organization=organization, app=app, require=True)
    check = _check(organization=organization, app=app, capability=capability, environment=environment)
    if check["_current_variant"] is None:
        raise Conflict(f"{capability.key} is not enabled in {environment}: enable it first.")
    if not check["better"]:
        raise Conflict("No better variant is available for this fleet.", fields={"variant": ["Already optimal."]})
    strategy = services.stages_validate({
        "type": StrategyType.STAGED,
        "stages": list(stages or DEFAULT_STAGES),
        "auto_promote": True,
        "min_stage_duration_s": 3600,
        "health_gates": dict(OPTIMIZE_GATES),
    })
    deployment = services.deployment_create(
        organization=organization,
        actor=actor,
        app=app,
        capability=capability,
        variant=check["_recommended_variant"],
        environment=environment,
        targeting=targeting,
        strategy=strategy,
        bindings=check["_bindings"],
    )
    deployment = services.deployment_start(deployment=deployment, actor=actor)
    return {"deployment": deployment, "check": _public(check)}


# --- slot coverage health --------------------------------------------------------------------------------
def _slot_status(*, variant_id, target, coverage):
    if variant_id is None:
        return "unconfigured"
    if not target:
        return "no_targets"
    return "healthy" if coverage >= HEALTHY_COVERAGE else "degraded"


def _overall(slots):
    statuses = {slot["status"] for slot in slots}
    return next((s for s in ("degraded", "unconfigured", "no_targets") if s in statuses),
                "healthy" if slots else "unconfigured")


def slot_coverage(*, apps, organization=None):
    """{app id: {"app", "status", "slots": [{capability, variant_id, target_devices, active_devices,
    coverage, status}]}} for any number of apps in four grouped aggregate queries (the API's health
    endpoint and a list badge use the same numbers).

    target_devices: the app's devices (app_devices); active_devices: distinct devices among them with an
    in-rollout assignment in status installed or active of a live deployment of the app for the
    slot's capability."""
    apps = list(apps)
    ids = [a.id for a in apps]
    scope = {"organization": organization} if organization is not None else {}
    slots = CapabilitySlot.objects.filter(app_id__in=ids, **scope).select_related("capability").order_by(
        "app_id", "capability__key"
    )
    targets = dict(
        Device.objects.filter(app_target__app_id__in=ids, status__in=ELIGIBLE_STATUSES, **scope)
        .values("app_target__app_id").annotate(n=Count("pk")).values_list("app_target__app_id", "n")
    )
    live = {}
    for row in (
        Deployment.objects.filter(app_id__in=ids, status__in=LIVE_STATUSES, **scope)
        .order_by(F("started_at").desc(nulls_last=True), "-created_at")
        .values("app_id", "capability_id", "variant_id")
    ):
        live.setdefault((row["app_id"], row["capability_id"]), row["variant_id"])
    active = {
        (row["deployment__app_id"], row["deployment__capability_id"]): row["n"]
        for row in DeviceAssignment.objects.filter(
            deployment__app_id__in=ids,
            deployment__status__in=LIVE_STATUSES,
            in_rollout=True,
            status__in=COVERED_STATUSES,
            device__status__in=ELIGIBLE_STATUSES,
            device__app_target__app_id=F("deployment__app_id"),
            **scope,
        )
        .values("deployment__app_id", "deployment__capability_id")
        .annotate(n=Count("device", distinct=True))
    }
    result = {a.id: {"app": a.slug, "status": "unconfigured", "slots": []} for a in apps}
    for slot in slots:
        target = targets.get(slot.app_id, 0)
        variant_id = live.get((slot.app_id, slot.capability_id)) or slot.variant_id
        active_n = active.get((slot.app_id, slot.capability_id), 0)
        coverage = round(active_n / target, 4) if target else 0.0
        result[slot.app_id]["slots"].append({
            "capability": slot.capability.key,
            "variant_id": str(variant_id) if variant_id else None,
            "target_devices": target,
            "active_devices": active_n,
            "coverage": coverage,
            "status": _slot_status(variant_id=variant_id, target=target, coverage=coverage),
        })
    for entry in result.values():
        entry["status"] = _overall(entry["slots"])
    return result


def app_health(*, organization, app):
    """GET /apps/{slug}/health: one app's slot coverage (see slot_coverage)."""
    return slot_coverage(apps=[app], organization=organization)[app.id]


# --- recompute scheduling ----------------------------------------------------------------------------------
def catalog_changed(*, org_id):
    """Enqueue one profile recompute per organization (None: the public catalog) when the current
    transaction commits; several variant saves in one transaction enqueue it once."""
    key = None if org_id is None else str(org_id)
    for entry in transaction.get_connection().run_on_commit:
        if getattr(entry[1], "fleet_catalog_org", "-") == key:
            return

    def enqueue():
        from .tasks import profiles_recompute_catalog

        profiles_recompute_catalog.delay(key)

    enqueue.fleet_catalog_org = key
    transaction.on_commit(enqueue)


def devices_changed(*, organization, device_ids):
    """Registration or capability/inventory change: recompute those devices' profiles after commit
    (`device_ids` None: every device of the organization)."""
    from .services import REFRESH_BY_ID_MAX

    ids = None
    if device_ids is not None:
        ids = [str(d) for d in device_ids]
        if not ids:
            return
        if len(ids) > REFRESH_BY_ID_MAX:
            ids = None  # a fleet-wide change (bulk labels on 100k devices): the organization in one task

    def enqueue():
        from .tasks import profiles_recompute

        profiles_recompute.delay(str(organization.id), ids)

    transaction.on_commit(enqueue)
