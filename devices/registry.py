"""Contributions from apps above `devices` (deployments, training rounds, provisioning).

`devices` never imports them: they register plain functions here from their AppConfig.ready().

- heartbeat providers: ``fn(*, device, organization) -> dict`` with any of ``directives`` (a list,
  concatenated across providers), ``pending_round_id`` and ``message`` (the first non-null wins).
- health providers: ``fn(*, device, organization) -> dict`` of extra fields for ``/devices/{device}/health``.
- summary providers: ``fn(*, organization) -> dict`` of extra fields (or overrides such as
  ``enrollment_errors``) for ``/devices/summary``.
- change listeners: ``fn(*, organization, device_ids)`` after devices were registered, changed
  (labels, platform, status) or deleted, inside the same transaction (assignments stay exact).
- group change listeners: ``fn(*, organization, group_ids)`` after groups were created, edited
  (selector, static members) or deleted, inside the same transaction, after their memberships.
- revoke listeners: ``fn(*, device, at)`` inside the revoking transaction (certificates die with it).
- enrichers: ``fn(*, organization, devices) -> {device id: {field: value}}`` for device list and
  detail responses, one call per page (a fixed number of queries for any page size).
- presence publishers: ``fn() -> {name: value}``, run by every presence flush across organizations
  and published in Redis for the steady polls' scripts (devices.presence).

Providers run on hot paths: keep them to a fixed, small number of queries.
"""

_heartbeat_providers = []
_health_providers = []
_summary_providers = []
_change_listeners = []
_revoke_listeners = []
_group_change_listeners = []
_enrichers = []
_presence_publishers = []


def _register(registry, fn):
    if fn not in registry:
        registry.append(fn)
    return fn


def register_heartbeat_provider(fn):
    return _register(_heartbeat_providers, fn)


def register_health_provider(fn):
    return _register(_health_providers, fn)


def register_summary_provider(fn):
    return _register(_summary_providers, fn)


def register_change_listener(fn):
    return _register(_change_listeners, fn)


def register_group_change_listener(fn):
    return _register(_group_change_listeners, fn)


def register_revoke_listener(fn):
    return _register(_revoke_listeners, fn)


def register_enricher(fn):
    return _register(_enrichers, fn)


def register_presence_publisher(fn):
    return _register(_presence_publishers, fn)


def unregister(fn):
    for registry in (_heartbeat_providers, _health_providers, _summary_providers, _change_listeners,
                     _revoke_listeners, _enrichers, _group_change_listeners, _presence_publishers):
        if fn in registry:
            registry.remove(fn)


def quiet_heartbeat():
    """The contributions to the heartbeat of a device not flagged for attention: nothing to do."""
    return {"directives": [], "pending_round_id": None, "message": None}


def heartbeat_contributions(*, device, organization):
    """Providers run only for a device flagged with `attention` (see devices.services.devices_attention);
    when they find nothing, the flag is cleared unless it was bumped again meanwhile."""
    result = quiet_heartbeat()
    if not device.attention:
        return result
    for provider in _heartbeat_providers:
        contribution = provider(device=device, organization=organization) or {}
        result["directives"].extend(contribution.get("directives") or [])
        for key in ("pending_round_id", "message"):
            if result[key] is None and contribution.get(key) is not None:
                result[key] = contribution[key]
    if not result["directives"] and result["pending_round_id"] is None:
        from .models import Device

        Device.objects.filter(pk=device.pk, attention=device.attention).update(attention=0)
    return result


def health_contributions(*, device, organization):
    result = {}
    for provider in _health_providers:
        result.update(provider(device=device, organization=organization) or {})
    return result


def summary_contributions(*, organization):
    result = {}
    for provider in _summary_providers:
        result.update(provider(organization=organization) or {})
    return result


def devices_changed(*, organization, device_ids, label_keys=None, groups_changed=None):
    """`label_keys`: only these labels changed (None: anything may have), and `groups_changed`: the
    dynamic groups whose membership changed, so listeners can skip what cannot be affected.
    `device_ids` None: too many to list, the listeners re-evaluate every device of the organization."""
    device_ids = None if device_ids is None else list(device_ids)
    if device_ids is None or device_ids:
        for listener in _change_listeners:
            listener(organization=organization, device_ids=device_ids, label_keys=label_keys,
                     groups_changed=groups_changed)


def groups_changed(*, organization, group_ids):
    group_ids = list(group_ids)
    if group_ids:
        for listener in _group_change_listeners:
            listener(organization=organization, group_ids=group_ids)


def device_revoked(*, device, at):
    for listener in _revoke_listeners:
        listener(device=device, at=at)


def enrichments(*, organization, devices):
    """{device id: {field: value}} merged from every enricher."""
    result = {}
    for enricher in _enrichers:
        for device_id, fields in (enricher(organization=organization, devices=devices) or {}).items():
            result.setdefault(device_id, {}).update(fields)
    return result


def presence_publishers():
    return list(_presence_publishers)
