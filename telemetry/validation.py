"""Validation of ingested reading items, one by one, in plain Python (the ingest hot path)."""

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime

from .models import METRIC_MAX


@dataclass
class Checked:
    """The outcome for one item: either a valid row (device, metric, ts, value) or a reason."""

    index: int
    device: object = None
    metric: str = ""
    ts: datetime | None = None
    value: float | None = None
    reason: str = ""

    @property
    def ok(self):
        return not self.reason


def parse_ts(value):
    """ISO-8601 → aware UTC datetime; naive timestamps are taken as UTC. None when unparseable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = parse_datetime(value.replace("z", "Z"))
    except ValueError:
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def device_refs(items):
    """The device references named by items (UUIDs and device_id strings) for one lookup query."""
    ids, names = set(), set()
    for item in items:
        ref = item.get("device_id") if isinstance(item, dict) else None
        if isinstance(ref, str) and ref:
            names.add(ref)
            try:
                ids.add(uuid.UUID(ref))
            except ValueError:
                pass
    return ids, names


def resolve(ref, devices_by_id, devices_by_name):
    """A reference is a device's UUID `id` or, failing that, its `device_id`."""
    try:
        found = devices_by_id.get(uuid.UUID(ref))
    except ValueError:
        found = None
    return found or devices_by_name.get(ref)


def check_item(index, item, *, own_device=None, default_device=None, devices_by_id=None, devices_by_name=None):
    """Validate one item. `own_device`: the calling device (it may name only itself);
    `default_device`: used when the item has no device_id (quarantine release)."""
    result = Checked(index=index)
    if not isinstance(item, dict):
        result.reason = "Each reading must be a JSON object."
        return result
    ref = item.get("device_id")
    if own_device is not None:
        result.device = own_device
        if ref is not None and ref != own_device.device_id and ref != str(own_device.id):
            result.reason = "device_id: a device may only report its own readings."
            return result
    elif ref is None:
        result.device = default_device
        if result.device is None:
            result.reason = "device_id: This field is required."
            return result
    elif not isinstance(ref, str) or not ref:
        result.reason = "device_id: Must be a device UUID or device_id string."
        return result
    else:
        result.device = resolve(ref, devices_by_id or {}, devices_by_name or {})
        if result.device is None:
            result.reason = f"device_id: No such device: {ref[:100]}."
            return result
    metric = item.get("metric")
    if not isinstance(metric, str) or not metric.strip():
        result.reason = "metric: This field is required (a non-empty string)."
        return result
    if len(metric) > METRIC_MAX:
        result.reason = f"metric: At most {METRIC_MAX} characters."
        return result
    ts = parse_ts(item.get("ts"))
    if ts is None:
        result.reason = "ts: An ISO-8601 timestamp is required."
        return result
    value = item.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        result.reason = "value: A number is required."
        return result
    try:
        value = float(value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        result.reason = "value: Must be a finite number."
        return result
    result.metric, result.ts, result.value = metric, ts, value
    return result
