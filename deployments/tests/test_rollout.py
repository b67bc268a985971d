"""Assignments: set-based materialization, stable proportional buckets, precedence, lifecycle."""

import uuid

import pytest
from django.db import connection

from deployments import materialize, services
from deployments.models import AssignmentSource, DeploymentStatus, DeviceAssignment
from deployments.selectors import winning_assignments
from deployments.tests.factories import DeploymentFactory, public_variant
from devices.models import Device
from devices.tests.factories import DeviceFactory
from fleet.activity.services import SYSTEM
from fleet.errors import Conflict, Invalid
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db


def make_devices(organization, count, **fields):
    with rls.bypass(reason="test setup"):
        return Device.objects.bulk_create(
            [Device(organization=organization, device_id=f"bulk-{uuid.uuid4().hex[:12]}", **fields) for _ in range(count)]
        )


def deployment(organization, **fields):
    return DeploymentFactory(organization=organization, **fields)


def assignments(dep):
    return {a.device_id: a for a in DeviceAssignment.objects.filter(deployment=dep)}


def test_sql_bucket_matches_the_python_hash(org, org_context):
    org_context(org)
    devices = make_devices(org, 50)
    dep = deployment(org)
    services.deployment_start(deployment=dep, actor=SYSTEM)
    rows = assignments(dep)
    assert len(rows) == 50
    assert all(row.bucket == materialize.bucket(device_id, dep.id) for device_id, row in rows.items())
    assert {d.id for d in devices} == set(rows)


def test_stage_buckets_are_stable_and_proportional_on_10k_devices(org, org_context):
    org_context(org)
    make_devices(org, 10_000)
    dep = deployment(org)
    services.deployment_start(deployment=dep, actor=SYSTEM)
    first = set(DeviceAssignment.objects.filter(deployment=dep, in_rollout=True).values_list("device_id", flat=True))
    assert abs(len(first) - 1_000) <= 200  # 10% ± 2% of the fleet
    services.deployment_promote(deployment=dep, actor=SYSTEM)
    second = set(DeviceAssignment.objects.filter(deployment=dep, in_rollout=True).values_list("device_id", flat=True))
    assert abs(len(second) - 5_000) <= 200
    assert first <= second  # nobody leaves the rollout when it widens
    services.deployment_promote(deployment=dep, actor=SYSTEM)
    dep.refresh_from_db()
    assert dep.status == DeploymentStatus.COMPLETED
    assert DeviceAssignment.objects.filter(deployment=dep, in_rollout=False).count() == 0


def test_targeting_terms_and_the_strongest_source(org, other_org, org_context):
    org_context(org)
    berlin = DeviceFactory(organization=org, labels={"site": "berlin"})
    paris = DeviceFactory(organization=org, labels={"site": "paris"})
    explicit = DeviceFactory(organization=org, labels={"site": "berlin"})
    revoked = DeviceFactory(organization=org, labels={"site": "berlin"}, status="revoked")
    foreign = DeviceFactory(organization=other_org, labels={"site": "berlin"})
    dep = deployment(org, targeting={"selector": {"match_labels": {"site": "berlin"}}, "device_ids": [str(explicit.id)]})
    services.deployment_start(deployment=dep, actor=SYSTEM)
    rows = assignments(dep)
    assert set(rows) == {berlin.id, explicit.id}
    assert rows[explicit.id].source == AssignmentSource.DEVICE and rows[berlin.id].source == AssignmentSource.SELECTOR
    assert paris.id not in rows and revoked.id not in rows and foreign.id not in rows


def test_refresh_keeps_assignments_exact_when_labels_change(org, org_context):
    org_context(org)
    device = DeviceFactory(organization=org, labels={"site": "berlin"})
    dep = deployment(org, targeting={"selector": {"match_labels": {"site": "berlin"}}})
    services.deployment_start(deployment=dep, actor=SYSTEM)
    assert device.id in assignments(dep)
    Device.objects.filter(pk=device.pk).update(labels={"site": "paris"})
    services.assignments_refresh(organization=org, device_ids=[device.id])
    assert device.id not in assignments(dep)
    Device.objects.filter(pk=device.pk).update(labels={"site": "berlin"})
    services.assignments_refresh(organization=org, device_ids=[device.id])
    assert device.id in assignments(dep)


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        ("device", "selector", "first"),
        ("selector", "device", "second"),
        ("selector", "selector", "second"),  # same source: the newest deployment
    ],
)
def test_winning_assignment_precedence(org, org_context, first, second, winner):
    org_context(org)
    device = DeviceFactory(organization=org, labels={"tier": "gold"})
    targeting = {"device": {"device_ids": [str(device.id)]}, "selector": {"selector": {"match_labels": {"tier": "gold"}}}}
    all_at_once = {"type": "all_at_once"}
    a = deployment(org, targeting=targeting[first], strategy=all_at_once, environment="staging")
    b = deployment(org, targeting=targeting[second], strategy=all_at_once, variant=public_variant(index=1))
    services.deployment_start(deployment=a, actor=SYSTEM)
    services.deployment_start(deployment=b, actor=SYSTEM)
    [win] = winning_assignments(organization=org, device_ids=[device.id])[device.id]
    assert win.deployment_id == (a if winner == "first" else b).id


def test_device_outside_the_stage_keeps_the_previous_variant(org, org_context):
    org_context(org)
    devices = make_devices(org, 200)
    old = deployment(org, strategy={"type": "all_at_once"})
    services.deployment_start(deployment=old, actor=SYSTEM)
    new = deployment(org, variant=public_variant(index=1), strategy={"type": "staged", "stages": [10, 100]})
    services.deployment_start(deployment=new, actor=SYSTEM)
    winners = winning_assignments(organization=org, device_ids=[d.id for d in devices])
    rolled = {a.device_id for a in DeviceAssignment.objects.filter(deployment=new, in_rollout=True)}
    for device in devices:
        [win] = winners[device.id]
        assert win.deployment_id == (new.id if device.id in rolled else old.id)
    # Paused freezes; rolled back never wins and the previous variant is restored everywhere.
    services.deployment_pause(deployment=new, actor=SYSTEM)
    assert winning_assignments(organization=org, device_ids=[next(iter(rolled))])[next(iter(rolled))][0].deployment_id == new.id
    services.deployment_rollback(deployment=new, actor=SYSTEM, reason="test")
    winners = winning_assignments(organization=org, device_ids=[d.id for d in devices])
    assert {w[0].deployment_id for w in winners.values()} == {old.id}


def test_completion_supersedes_and_rollback_restores(org, org_context):
    org_context(org)
    devices = make_devices(org, 20)
    old = deployment(org, strategy={"type": "all_at_once"})
    services.deployment_start(deployment=old, actor=SYSTEM)
    new = deployment(org, variant=public_variant(index=1), strategy={"type": "all_at_once"})
    services.deployment_start(deployment=new, actor=SYSTEM)
    old.refresh_from_db()
    new.refresh_from_db()
    assert new.status == DeploymentStatus.COMPLETED and old.status == DeploymentStatus.SUPERSEDED
    assert new.previous_deployment_id == old.id
    services.deployment_rollback(deployment=new, actor=SYSTEM, reason="bad model")
    old.refresh_from_db()
    assert old.status == DeploymentStatus.COMPLETED
    winners = winning_assignments(organization=org, device_ids=[d.id for d in devices])
    assert {w[0].deployment_id for w in winners.values()} == {old.id}


@pytest.mark.parametrize(
    ("status", "action"),
    [("draft", "pause"), ("draft", "promote"), ("completed", "start"), ("cancelled", "resume"), ("rolled_back", "rollback")],
)
def test_illegal_transitions_conflict(org, org_context, status, action):
    org_context(org)
    dep = deployment(org, status=status)
    with pytest.raises(Conflict) as error:
        services.ACTIONS[action](deployment=dep, actor=SYSTEM)
    assert status in error.value.message


def test_targeting_must_name_known_things(org, other_org, org_context):
    org_context(org)
    foreign = DeviceFactory(organization=other_org)
    with pytest.raises(Invalid) as error:
        services.validate_targeting(organization=org, app=None, targeting={"device_ids": [str(foreign.id)]})
    assert "targeting.device_ids" in error.value.fields
    with pytest.raises(Invalid):
        services.validate_targeting(organization=org, app=None, targeting={})


def test_materialization_is_one_statement_pair_whatever_the_fleet_size(org, org_context, django_assert_max_num_queries):
    org_context(org)
    make_devices(org, 500)
    dep = deployment(org)
    with django_assert_max_num_queries(12):
        services.deployment_start(deployment=dep, actor=SYSTEM)
    assert DeviceAssignment.objects.filter(deployment=dep).count() == 500
    assert connection.vendor in ("postgresql", "sqlite")


def test_health_gates_roll_back_a_failing_stage(org, org_context):
    org_context(org)
    make_devices(org, 100)
    dep = deployment(org, strategy={"type": "staged", "stages": [50, 100],
                                    "health_gates": {"max_failure_rate": 0.2, "min_reporting_devices": 5}})
    services.deployment_start(deployment=dep, actor=SYSTEM)
    rolled = list(DeviceAssignment.objects.filter(deployment=dep, in_rollout=True)[:10])
    DeviceAssignment.objects.filter(pk__in=[a.pk for a in rolled[:4]]).update(status="failed")
    DeviceAssignment.objects.filter(pk__in=[a.pk for a in rolled[4:]]).update(status="active")
    dep.refresh_from_db()
    assert services.deployment_evaluate(deployment=dep) == "rolled_back"
    dep.refresh_from_db()
    assert dep.status == DeploymentStatus.ROLLED_BACK and "40.00%" in dep.status_reason


def test_health_gates_promote_a_healthy_stage_after_its_duration(org, org_context):
    from datetime import timedelta

    from django.utils import timezone

    org_context(org)
    make_devices(org, 100)
    dep = deployment(org, strategy={"type": "staged", "stages": [20, 100], "auto_promote": True, "min_stage_duration_s": 600,
                                    "health_gates": {"max_failure_rate": 0.5, "min_reporting_devices": 1}})
    services.deployment_start(deployment=dep, actor=SYSTEM)
    DeviceAssignment.objects.filter(deployment=dep, in_rollout=True).update(status="active")
    dep.refresh_from_db()
    assert services.deployment_evaluate(deployment=dep) is None  # too early
    later = timezone.now() + timedelta(seconds=601)
    assert services.deployment_evaluate(deployment=dep, now=later) == "promoted"
    dep.refresh_from_db()
    assert dep.status == DeploymentStatus.COMPLETED




def test_large_refreshes_rematerialize_whole_deployments(org, org_context, monkeypatch):
    org_context(org)
    devices = make_devices(org, 30, labels={"site": "berlin"})
    dep = deployment(org, targeting={"selector": {"match_labels": {"site": "berlin"}}})
    services.deployment_start(deployment=dep, actor=SYSTEM)
    Device.objects.filter(pk__in=[d.pk for d in devices[:10]]).update(labels={"site": "paris"})
    monkeypatch.setattr(services, "REFRESH_BY_ID_MAX", 5)  # 10 changed devices: the whole deployment
    services.assignments_refresh(organization=org, device_ids=[d.pk for d in devices[:10]])
    assert DeviceAssignment.objects.filter(deployment=dep).count() == 20
