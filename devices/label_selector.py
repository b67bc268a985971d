"""Kubernetes-style label selectors over devices: validation, SQL (a Q) and a Python evaluator.

    {"match_labels": {"site": "berlin"},
     "match_expressions": [{"key": "tier", "operator": "In", "values": ["gold"]}],
     "platforms": ["ios"]}

All terms are AND-ed; an empty selector matches every device. NotIn and DoesNotExist match devices
without the key, as in Kubernetes. The same semantics are implemented twice on purpose — once as
SQL for set-based materialization, once in Python for previews and property tests — and the tests
compare the two.
"""

from django.db.models import Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.lookups import Exact, In

from fleet.errors import Invalid

from .validation import label_key_error, label_value_error

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
TERMS = ("match_labels", "match_expressions", "platforms")
MAX_TERMS = 64
MAX_VALUES = 256


def validate_selector(selector, *, field="selector", platforms=None):
    """Return a normalized selector or raise Invalid naming the offending term."""
    if selector is None:
        selector = {}
    if not isinstance(selector, dict):
        raise Invalid("A selector is an object with match_labels, match_expressions and platforms.", field=field)
    unknown = sorted(set(selector) - set(TERMS))
    if unknown:
        raise Invalid(f"Unknown selector term {unknown[0]!r}.", field=f"{field}.{unknown[0]}")

    match_labels = selector.get("match_labels") or {}
    if not isinstance(match_labels, dict) or len(match_labels) > MAX_TERMS:
        raise Invalid(f"match_labels is an object of at most {MAX_TERMS} labels.", field=f"{field}.match_labels")
    for key, value in match_labels.items():
        error = label_key_error(key) or label_value_error(value)
        if error:
            raise Invalid(error, field=f"{field}.match_labels.{key}")

    expressions = selector.get("match_expressions") or []
    if not isinstance(expressions, list) or len(expressions) > MAX_TERMS:
        raise Invalid(f"match_expressions is a list of at most {MAX_TERMS} terms.", field=f"{field}.match_expressions")
    normalized = []
    for index, term in enumerate(expressions):
        name = f"{field}.match_expressions.{index}"
        if not isinstance(term, dict):
            raise Invalid("Each expression is an object with key, operator and values.", field=name)
        key, operator, values = term.get("key"), term.get("operator"), term.get("values", [])
        error = label_key_error(key)
        if error:
            raise Invalid(error, field=f"{name}.key")
        if operator not in OPERATORS:
            raise Invalid(f"Unknown operator {operator!r}; use one of {', '.join(OPERATORS)}.", field=f"{name}.operator")
        if not isinstance(values, list) or len(values) > MAX_VALUES:
            raise Invalid(f"values is a list of at most {MAX_VALUES} strings.", field=f"{name}.values")
        if operator in ("In", "NotIn") and not values:
            raise Invalid(f"{operator} needs at least one value.", field=f"{name}.values")
        if operator in ("Exists", "DoesNotExist") and values:
            raise Invalid(f"{operator} takes no values.", field=f"{name}.values")
        for value in values:
            error = label_value_error(value)
            if error:
                raise Invalid(error, field=f"{name}.values")
        normalized.append({"key": key, "operator": operator, "values": list(values)})

    wanted_platforms = selector.get("platforms") or []
    if not isinstance(wanted_platforms, list) or any(not isinstance(p, str) for p in wanted_platforms):
        raise Invalid("platforms is a list of platform names.", field=f"{field}.platforms")
    if platforms is not None:
        bad = [p for p in wanted_platforms if p not in platforms]
        if bad:
            raise Invalid(f"Unknown platform {bad[0]!r}.", field=f"{field}.platforms")
    return {"match_labels": dict(match_labels), "match_expressions": normalized, "platforms": list(wanted_platforms)}


def _label(key):
    return KeyTextTransform(key, "labels")


def selector_q(selector):
    """The selector as a Q over Device (expects a validated selector)."""
    q = Q()
    # labels->>'key' = value per pair: cheaper than one jsonb @> for all of them, and no index on
    # labels could serve either under row-level security (devices migration 0011).
    for key, value in (selector.get("match_labels") or {}).items():
        q &= Q(Exact(_label(key), value))
    for term in selector.get("match_expressions") or []:
        key, operator, values = term["key"], term["operator"], term.get("values") or []
        has_key = Q(labels__has_key=key)
        if operator == "In":
            q &= Q(In(_label(key), values))
        elif operator == "NotIn":
            q &= ~has_key | ~Q(In(_label(key), values))
        elif operator == "Exists":
            q &= has_key
        else:
            q &= ~has_key
    if selector.get("platforms"):
        q &= Q(platform__in=selector["platforms"])
    return q


def reads_keys(selector, keys):
    """Can a change of these label keys change what the selector matches?"""
    read = set(selector.get("match_labels") or {}) | {term["key"] for term in selector.get("match_expressions") or []}
    return bool(read & set(keys))


def matches(selector, *, labels, platform):
    """Evaluate a validated selector against one device in Python."""
    for key, value in (selector.get("match_labels") or {}).items():
        if labels.get(key) != value:
            return False
    for term in selector.get("match_expressions") or []:
        key, operator, values = term["key"], term["operator"], term.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    platforms = selector.get("platforms") or []
    return not platforms or platform in platforms
