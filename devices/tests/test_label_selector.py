"""Selector semantics: the SQL (selector_q) and the Python evaluator (matches) agree, operator by operator."""

import pytest

from devices.label_selector import matches, selector_q, validate_selector
from devices.models import Device, Platform
from devices.tests.factories import DeviceFactory
from fleet.errors import Invalid

pytestmark = pytest.mark.django_db

FLEET = {
    "berlin-gold": ({"site": "berlin", "tier": "gold"}, "ios"),
    "berlin-silver": ({"site": "berlin", "tier": "silver"}, "android"),
    "paris-gold": ({"site": "paris", "tier": "gold", "gpu": "yes"}, "ios"),
    "paris-none": ({"site": "paris"}, "linux"),
    "bare": ({}, "python"),
}


@pytest.fixture
def fleet(org, org_context):
    org_context(org)
    for device_id, (labels, platform) in FLEET.items():
        DeviceFactory(organization=org, device_id=device_id, labels=labels, platform=platform)
    return org


def sql(org, selector):
    selector = validate_selector(selector)
    return set(Device.objects.filter(organization=org).filter(selector_q(selector)).values_list("device_id", flat=True))


def python(selector):
    selector = validate_selector(selector)
    return {d for d, (labels, platform) in FLEET.items() if matches(selector, labels=labels, platform=platform)}


CASES = [
    ({}, set(FLEET)),
    ({"match_labels": {"site": "berlin"}}, {"berlin-gold", "berlin-silver"}),
    ({"match_labels": {"site": "berlin", "tier": "gold"}}, {"berlin-gold"}),
    ({"match_expressions": [{"key": "tier", "operator": "In", "values": ["gold", "bronze"]}]}, {"berlin-gold", "paris-gold"}),
    # NotIn matches devices without the key, as in Kubernetes.
    ({"match_expressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]},
     {"berlin-silver", "paris-none", "bare"}),
    ({"match_expressions": [{"key": "gpu", "operator": "Exists"}]}, {"paris-gold"}),
    ({"match_expressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"paris-none", "bare"}),
    ({"platforms": ["ios", "linux"]}, {"berlin-gold", "paris-gold", "paris-none"}),
    (
        {"match_labels": {"site": "paris"}, "match_expressions": [{"key": "gpu", "operator": "DoesNotExist"}],
         "platforms": ["linux"]},
        {"paris-none"},
    ),
    (
        {"match_expressions": [{"key": "tier", "operator": "In", "values": ["gold"]},
                               {"key": "site", "operator": "NotIn", "values": ["paris"]}]},
        {"berlin-gold"},
    ),
    ({"match_labels": {"site": "rome"}}, set()),
]


@pytest.mark.parametrize(("selector", "expected"), CASES)
def test_each_operator_in_sql_and_python(fleet, selector, expected):
    assert python(selector) == expected
    assert sql(fleet, selector) == expected


@pytest.mark.parametrize(
    ("selector", "field"),
    [
        ({"match_expressions": [{"key": "tier", "operator": "Near", "values": ["x"]}]}, "selector.match_expressions.0.operator"),
        ({"match_expressions": [{"key": "tier", "operator": "In", "values": []}]}, "selector.match_expressions.0.values"),
        ({"match_expressions": [{"key": "tier", "operator": "Exists", "values": ["x"]}]}, "selector.match_expressions.0.values"),
        ({"match_expressions": [{"key": "-bad", "operator": "Exists"}]}, "selector.match_expressions.0.key"),
        ({"match_labels": {"bad key!": "x"}}, "selector.match_labels.bad key!"),
        ({"match_labels": {"site": 3}}, "selector.match_labels.site"),
        ({"labels": {}}, "selector.labels"),
        ({"platforms": ["amiga"]}, "selector.platforms"),
        ([], "selector"),
    ],
)
def test_invalid_selectors_name_the_term(selector, field):
    with pytest.raises(Invalid) as exc:
        validate_selector(selector, platforms=Platform.values)
    assert field in exc.value.fields


def test_normalized_form():
    assert validate_selector(None) == {"match_labels": {}, "match_expressions": [], "platforms": []}
    assert validate_selector({"match_expressions": [{"key": "a", "operator": "Exists"}]})["match_expressions"] == [
        {"key": "a", "operator": "Exists", "values": []}
    ]
