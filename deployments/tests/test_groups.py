"""A deployment that targets a device group follows the group's membership, in the same transaction."""

import pytest

from deployments import services
from deployments.models import AssignmentSource, DeviceAssignment
from deployments.tests.factories import DeploymentFactory
from devices import services as device_services
from devices.models import GroupKind
from devices.tests.factories import DeviceFactory
from fleet.activity.services import SYSTEM
from fleet.errors import Invalid

pytestmark = pytest.mark.django_db


def assigned(dep):
    return set(DeviceAssignment.objects.filter(deployment=dep).values_list("device__device_id", flat=True))


def start(org, group):
    dep = DeploymentFactory(
        organization=org,
        targeting={"selector": None, "app_target_ids": [], "device_group_ids": [str(group.id)], "device_ids": []},
        strategy={"type": "staged", "stages": [100]},
    )
    services.deployment_start(deployment=dep, actor=SYSTEM)
    return dep



def test_a_bulk_change_too_large_to_list_re_evaluates_the_organization(org, org_context, monkeypatch):
    """Above ID_LIST_MAX changed devices the ids are not listed (on PostgreSQL not even read back):
    groups and deployments re-evaluate every device of the organization, with the same result."""
    from devices import membership

    monkeypatch.setattr(membership, "ID_LIST_MAX", 2)
    org_context(org)
    for name in ("one", "two", "three"):
        DeviceFactory(organization=org, device_id=name, labels={"site": "paris"})
    DeviceFactory(organization=org, device_id="four", labels={"site": "berlin"})
    group = device_services.device_group_create(organization=org, actor=SYSTEM, name="B", slug="b",
                                                selector={"match_labels": {"site": "berlin"}})
    by_group = start(org, group)
    by_selector = DeploymentFactory(organization=org, targeting={"selector": {"match_labels": {"site": "berlin"}}},
                                    strategy={"type": "all_at_once"}, environment="staging")
    services.deployment_start(deployment=by_selector, actor=SYSTEM)
    assert assigned(by_group) == assigned(by_selector) == {"four"}

    result = device_services.devices_bulk_labels(organization=org, actor=SYSTEM, target={"selector": {}},
                                                 set_labels={"site": "berlin"})
    assert result == {"matched": 4, "changed": 3}
    group.refresh_from_db()
    assert group.member_count == 4
    assert assigned(by_group) == assigned(by_selector) == {"one", "two", "three", "four"}

def test_dynamic_group_target_follows_labels_and_selector_edits(org, org_context):
    org_context(org)
    one = DeviceFactory(organization=org, device_id="one", labels={"site": "berlin"})
    DeviceFactory(organization=org, device_id="two", labels={"site": "paris"})
    group = device_services.device_group_create(organization=org, actor=SYSTEM, name="B", slug="b",
                                                selector={"match_labels": {"site": "berlin"}})
    dep = start(org, group)
    assert assigned(dep) == {"one"}
    assert DeviceAssignment.objects.get(deployment=dep).source == AssignmentSource.GROUP

    one.organization = org
    device_services.device_update(device=one, actor=SYSTEM, labels={"site": "paris"})  # label change out
    assert assigned(dep) == set()
    device_services.device_update(device=one, actor=SYSTEM, labels={"site": "berlin"})  # and back in
    assert assigned(dep) == {"one"}
    device_services.device_register(organization=org, actor=SYSTEM, device_id="three", labels={"site": "berlin"})
    assert assigned(dep) == {"one", "three"}
    device_services.devices_bulk_labels(organization=org, actor=SYSTEM, target={"device_ids": ["two"]},
                                        set_labels={"site": "berlin"})
    assert assigned(dep) == {"one", "two", "three"}
    group.refresh_from_db()
    group.organization = org
    device_services.device_group_update(group=group, actor=SYSTEM, selector={"match_labels": {"site": "rome"}})
    assert assigned(dep) == set()


def test_static_group_target_follows_members(org, org_context):
    org_context(org)
    DeviceFactory(organization=org, device_id="one")
    DeviceFactory(organization=org, device_id="two")
    group = device_services.device_group_create(organization=org, actor=SYSTEM, name="S", slug="s", kind=GroupKind.STATIC)
    dep = start(org, group)
    assert assigned(dep) == set()
    device_services.device_group_members_add(group=group, actor=SYSTEM, device_refs=["one", "two"])
    assert assigned(dep) == {"one", "two"}
    device_services.device_group_members_remove(group=group, actor=SYSTEM, device_refs=["two"])
    assert assigned(dep) == {"one"}
    device_services.device_group_delete(group=group, actor=SYSTEM)
    assert assigned(dep) == set()


def test_targeting_validates_group_ids(org, other_org, org_context):
    org_context(org)
    mine = device_services.device_group_create(organization=org, actor=SYSTEM, name="M", slug="m")
    services.validate_targeting(organization=org, app=None, targeting={"device_group_ids": [str(mine.id)]})
    org_context(other_org)
    theirs = device_services.device_group_create(organization=other_org, actor=SYSTEM, name="T", slug="t")
    org_context(org)
    with pytest.raises(Invalid) as exc:
        services.validate_targeting(organization=org, app=None, targeting={"device_group_ids": [str(theirs.id)]})
    assert "targeting.device_group_ids" in exc.value.fields


def test_label_changes_re_evaluate_only_what_reads_those_keys(org, org_context, django_capture_on_commit_callbacks):
    """Selector deployments and group deployments follow a label they read; a label nobody reads
    touches no membership, no assignment and no capability profile."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    org_context(org)
    one = DeviceFactory(organization=org, device_id="one", labels={"site": "berlin", "tier": "edge"})
    DeviceFactory(organization=org, device_id="two", labels={"site": "paris", "tier": "core"})
    group = device_services.device_group_create(organization=org, actor=SYSTEM, name="B", slug="b",
                                                selector={"match_labels": {"site": "berlin"}})
    by_group = start(org, group)
    by_selector = DeploymentFactory(
        organization=org, targeting={"selector": {"match_expressions": [{"key": "tier", "operator": "In", "values": ["edge"]}]}},
        strategy={"type": "all_at_once"}, environment="staging",  # not superseding by_group
    )
    services.deployment_start(deployment=by_selector, actor=SYSTEM)
    assert assigned(by_group) == {"one"} and assigned(by_selector) == {"one"}

    device_services.devices_bulk_labels(organization=org, actor=SYSTEM, target={"selector": {}}, set_labels={"tier": "edge"})
    assert assigned(by_selector) == {"one", "two"} and assigned(by_group) == {"one"}
    one.organization = org
    device_services.device_update(device=one, actor=SYSTEM, labels={"site": "paris"})
    assert assigned(by_group) == set() and assigned(by_selector) == {"one", "two"}

    with CaptureQueriesContext(connection) as captured, django_capture_on_commit_callbacks() as callbacks:
        result = device_services.devices_bulk_labels(organization=org, actor=SYSTEM, target={"selector": {}},
                                                     set_labels={"wave": "w1"})
    assert result["changed"] == 2
    written = [q["sql"] for q in captured.captured_queries
               if "devicegroupmembership" in q["sql"] or "deviceassignment" in q["sql"]]
    assert written == [] and callbacks == []
    assert assigned(by_group) == set() and assigned(by_selector) == {"one", "two"}
