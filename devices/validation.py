"""Domain rules for device fields, shared by the API serializers, the services and the admin.

Each function raises fleet.errors.Invalid naming the offending field.
"""

import json
import math
import re

from fleet.errors import Invalid

from .models import CAPABILITIES_MAX_BYTES, LABELS_MAX

# Kubernetes label syntax: an optional DNS-subdomain prefix and a name of at most 63 characters.
_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Would shadow routes under /devices/: register, summary, bulk/…, provision, registration/tokens.
RESERVED_DEVICE_IDS = frozenset({"register", "summary", "bulk", "provision", "registration"})

METRIC_RANGES = {
    "cpu_usage_percent": (0, 100),
    "memory_usage_percent": (0, 100),
    "battery_level": (0, 100),
    "storage_free_bytes": (0, None),
    "temperature_c": (-273.15, 1000),
}
METRIC_EXTRA_MAX = 32
_METRIC_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")


def label_key_error(key):
    if not isinstance(key, str) or not key:
        return "Label keys must be non-empty strings."
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"Invalid label key prefix in {key!r}: it must be a DNS subdomain of at most 253 characters."
    if not _NAME.match(name):
        return (
            f"Invalid label key {key!r}: at most 63 characters, alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric (an optional 'prefix/' is allowed)."
        )
    return None


def label_value_error(value):
    if not isinstance(value, str):
        return "Label values must be strings."
    if value and not _NAME.match(value):
        return (
            f"Invalid label value {value!r}: at most 63 characters, alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric."
        )
    return None


def validate_labels(labels, *, field="labels", allow_null_values=False):
    if not isinstance(labels, dict):
        raise Invalid("Labels must be an object of string keys to string values.", field=field)
    errors = {}
    for key, value in labels.items():
        error = label_key_error(key)
        if error is None and not (allow_null_values and value is None):
            error = label_value_error(value)
        if error:
            errors[f"{field}.{key}"] = [error]
    if errors:
        first = next(iter(errors.values()))[0]
        raise Invalid(first, fields=errors)
    if len([v for v in labels.values() if v is not None]) > LABELS_MAX:
        raise Invalid(f"A device has at most {LABELS_MAX} labels.", field=field)
    return labels


def validate_capabilities(capabilities, *, field="capabilities"):
    if not isinstance(capabilities, dict):
        raise Invalid("Capabilities must be a JSON object.", field=field)
    size = len(json.dumps(capabilities, separators=(",", ":")).encode())
    if size > CAPABILITIES_MAX_BYTES:
        raise Invalid(f"Capabilities must be at most {CAPABILITIES_MAX_BYTES} bytes of JSON ({size}).", field=field)
    return capabilities


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_metrics(metrics, *, field="metrics"):
    if not isinstance(metrics, dict):
        raise Invalid("Metrics must be an object of numbers.", field=field)
    errors = {}
    extra = 0
    for key, value in metrics.items():
        name = f"{field}.{key}"
        if key in METRIC_RANGES:
            low, high = METRIC_RANGES[key]
            if not _is_number(value):
                errors[name] = ["A number is required."]
            elif key == "storage_free_bytes" and (not float(value).is_integer()):
                errors[name] = ["An integer number of bytes is required."]
            elif (low is not None and value < low) or (high is not None and value > high):
                bound = f"between {low} and {high}" if high is not None else f"at least {low}"
                errors[name] = [f"Must be {bound}."]
            continue
        extra += 1
        if not isinstance(key, str) or not _METRIC_KEY.match(key):
            errors[name] = ["Metric names are 1-64 characters: letters, digits, '_' or '.'."]
        elif not _is_number(value):
            errors[name] = ["A number is required."]
    if extra > METRIC_EXTRA_MAX:
        errors.setdefault(field, []).append(f"At most {METRIC_EXTRA_MAX} metrics besides the known ones.")
    if errors:
        name, messages = next(iter(errors.items()))
        raise Invalid(f"{name}: {messages[0]}", fields=errors)
    return metrics


def validate_device_id(device_id, *, field="device_id"):
    if device_id in RESERVED_DEVICE_IDS:
        raise Invalid(f"{device_id!r} is reserved.", field=field)
    if "/" in device_id:
        raise Invalid("A device_id cannot contain '/'.", field=field)
    return device_id
