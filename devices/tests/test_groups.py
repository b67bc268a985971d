"""Device groups: exact materialized membership, static members, preview, the groups panel, bulk labels."""

import pytest

from devices import services
from devices.label_selector import matches
from devices.membership import NOT_MEMBERS
from devices.models import (
    Device,
    DeviceGroup,
    DeviceGroupMembership,
    DeviceStatus,
    GroupKind,
)
from devices.tests.factories import DeviceFactory, DeviceGroupFactory, registered_device
from fleet.activity.models import ActivityEvent
from fleet.activity.services import SYSTEM
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db
BERLIN = {"match_labels": {"site": "berlin"}}


def members(group):
    with rls.bypass(reason="test"):
        return set(
            DeviceGroupMembership.objects.filter(group_id=group.id).values_list("device__device_id", flat=True)
        )


def count(group):
    with rls.bypass(reason="test"):
        return DeviceGroup.objects.get(pk=group.pk).member_count


def expected(group):
    """From-scratch evaluation in Python."""
    with rls.bypass(reason="test"):
        group = DeviceGroup.objects.get(pk=group.pk)
        devices = Device.objects.filter(organization_id=group.organization_id)
        return {
            d.device_id for d in devices
            if d.status not in NOT_MEMBERS and matches(group.selector, labels=d.labels, platform=d.platform)
        }


def create_group(client, **body):
    body.setdefault("name", body.get("slug", "g").title())
    response = client.post("/api/v1/device-groups", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def group_row(body):
    with rls.bypass(reason="test"):
        return DeviceGroup.objects.get(pk=body["id"])


# --- dynamic groups through the API --------------------------------------------------------------------
def test_dynamic_group_membership_stays_exact(client_a, org):
    one = registered_device(org, labels={"site": "berlin"})
    registered_device(org, labels={"site": "paris"})
    body = create_group(client_a, slug="berlin", selector=BERLIN)
    group = group_row(body)
    assert body["member_count"] == 1 and body["kind"] == "dynamic" and members(group) == {one.device_id}

    # registration
    two = registered_device(org, labels={"site": "berlin"})
    assert members(group) == {one.device_id, two.device_id} == expected(group) and count(group) == 2
    # label change out and in
    assert client_a.patch(f"/api/v1/devices/{one.id}", {"labels": {"site": "paris"}}, format="json").status_code == 200
    assert members(group) == {two.device_id} and count(group) == 1
    assert client_a.patch(f"/api/v1/devices/{one.id}", {"labels": {"site": "berlin"}}, format="json").status_code == 200
    assert members(group) == {one.device_id, two.device_id}
    # archived and revoked devices are not members
    assert client_a.patch(f"/api/v1/devices/{one.id}", {"status": "archived"}, format="json").status_code == 200
    assert members(group) == {two.device_id}
    assert client_a.post(f"/api/v1/devices/{two.id}/revoke").status_code == 200
    assert members(group) == set() and count(group) == 0
    # selector edit
    response = client_a.patch(f"/api/v1/device-groups/{body['slug']}", {"selector": {"match_labels": {"site": "paris"}}},
                              format="json")
    assert response.status_code == 200 and response.json()["member_count"] == 1
    assert members(group) == expected(group)


def test_platform_change_on_re_registration(client_a, org):
    device = registered_device(org, device_id="phone", platform="android")
    group = group_row(create_group(client_a, slug="ios", selector={"platforms": ["ios"]}))
    assert members(group) == set()
    registered_device(org, device_id="phone", platform="ios")
    assert members(group) == {"phone"} and count(group) == 1
    del device


def test_deleted_devices_leave_static_groups_and_counts_follow(client_a, org):
    device = registered_device(org)
    group = group_row(create_group(client_a, slug="pilot", kind="static"))
    assert client_a.post("/api/v1/device-groups/pilot/members", {"device_ids": [device.device_id]}, format="json").json() == {
        "added": 1, "member_count": 1}
    client_a.patch(f"/api/v1/devices/{device.id}", {"status": "archived"}, format="json")
    assert members(group) == {device.device_id}  # static members stay when archived
    assert client_a.delete(f"/api/v1/devices/{device.id}").status_code == 204
    assert members(group) == set() and count(group) == 0


def test_invalid_selector_is_400_naming_the_term(client_a):
    response = client_a.post("/api/v1/device-groups", {"name": "x", "slug": "x", "selector": {
        "match_expressions": [{"key": "tier", "operator": "Near", "values": ["a"]}]}}, format="json")
    assert response.status_code == 400
    assert "selector" in response.json()["fields"] or any("operator" in k for k in response.json()["fields"])
    assert "operator" in str(response.json()["fields"])
    response = client_a.post("/api/v1/device-groups", {"name": "x", "slug": "x", "selector": {
        "match_expressions": [{"key": "tier", "operator": "In"}]}}, format="json")
    assert response.status_code == 400 and "values" in str(response.json()["fields"])
    response = client_a.post("/api/v1/device-groups", {"name": "x", "slug": "x", "selector": {
        "match_labels": {"bad key!": "a"}}}, format="json")
    assert response.status_code == 400 and "bad key!" in str(response.json()["fields"])


def test_crud_slug_lookup_and_conflicts(client_a, org):
    body = create_group(client_a, slug="edge", selector={"platforms": ["edge"]})
    assert client_a.get(f"/api/v1/device-groups/{body['id']}").json()["slug"] == "edge"
    assert client_a.get("/api/v1/device-groups/edge").json()["id"] == body["id"]
    assert client_a.post("/api/v1/device-groups", {"name": "again", "slug": "edge"}, format="json").status_code == 409
    assert client_a.post("/api/v1/device-groups", {"name": "p", "slug": "preview"}, format="json").status_code == 400
    assert client_a.patch("/api/v1/device-groups/edge", {"kind": "static"}, format="json").status_code == 400
    listed = client_a.get("/api/v1/device-groups").json()
    assert set(listed) == {"device_groups", "total", "limit", "offset"} and listed["total"] == 1
    assert client_a.delete("/api/v1/device-groups/edge").status_code == 204
    assert client_a.get("/api/v1/device-groups/edge").status_code == 404


# --- static groups -------------------------------------------------------------------------------------
def test_static_members_validation(client_a, org, other_org):
    mine = registered_device(org)
    also = registered_device(org)
    foreign = registered_device(other_org)
    create_group(client_a, slug="pilot", kind="static")
    url = "/api/v1/device-groups/pilot/members"
    response = client_a.post(url, {"device_ids": [str(mine.id), str(foreign.id), "nope"]}, format="json")
    assert response.status_code == 400
    assert set(response.json()["fields"]["device_ids"]) == {str(foreign.id), "nope"}
    assert client_a.get("/api/v1/device-groups/pilot").json()["member_count"] == 0  # nothing changed
    assert client_a.post(url, {"device_ids": [str(mine.id), also.device_id]}, format="json").json()["added"] == 2
    assert client_a.post(url, {"device_ids": [str(mine.id)]}, format="json").json() == {"added": 0, "member_count": 2}
    response = client_a.delete(url, {"device_ids": [also.device_id]}, format="json")
    assert response.json() == {"removed": 1, "member_count": 1}
    groups = client_a.get(f"/api/v1/devices/{mine.id}/groups").json()
    assert groups["total"] == 1 and groups["groups"][0]["slug"] == "pilot" and groups["groups"][0]["reason"] == "static"
    assert client_a.post(url, {"device_ids": []}, format="json").status_code == 400


def test_dynamic_groups_refuse_explicit_members(client_a, org):
    device = registered_device(org)
    create_group(client_a, slug="all", selector={})
    url = "/api/v1/device-groups/all/members"
    assert client_a.post(url, {"device_ids": [str(device.id)]}, format="json").status_code == 409
    assert client_a.delete(url, {"device_ids": [str(device.id)]}, format="json").status_code == 409


# --- preview, panel, filter ----------------------------------------------------------------------------
def test_preview_is_a_dry_run(client_a, org, statements):
    for index in range(12):
        registered_device(org, device_id=f"b-{index:02d}", labels={"site": "berlin"})
    registered_device(org, device_id="p", labels={"site": "paris"})
    with statements() as captured:
        response = client_a.post("/api/v1/device-groups/preview", {"selector": BERLIN}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 12 and len(body["sample"]) == 10 and body["sample"][0]["device_id"] == "b-00"
    writes = [q for q in captured.sql if q.split()[0].upper() in ("INSERT", "UPDATE", "DELETE") and "devices_" in q]
    assert writes == []  # (the API key's last-used touch aside)
    with rls.bypass(reason="test"):
        assert DeviceGroup.objects.count() == 0
    bad = client_a.post("/api/v1/device-groups/preview", {"selector": {"platforms": ["amiga"]}}, format="json")
    assert bad.status_code == 400
    assert client_a.get("/api/v1/device-groups/preview").status_code == 405


def test_device_groups_panel_and_list_filter(client_a, org):
    one = registered_device(org, device_id="one", labels={"site": "berlin"})
    registered_device(org, device_id="two", labels={"site": "paris"})
    body = create_group(client_a, slug="berlin", selector=BERLIN)
    panel = client_a.get(f"/api/v1/devices/{one.device_id}/groups").json()
    assert [(g["id"], g["reason"]) for g in panel["groups"]] == [(body["id"], "selector")]
    assert {d["device_id"] for d in client_a.get("/api/v1/devices?group=berlin").json()["devices"]} == {"one"}
    assert {d["device_id"] for d in client_a.get(f"/api/v1/devices?group={body['id']}").json()["devices"]} == {"one"}
    assert client_a.get("/api/v1/devices?group=unknown").status_code == 400


def test_group_devices_same_shape_filters_and_pagination(client_a, org):
    for index in range(3):
        registered_device(org, device_id=f"b-{index}", labels={"site": "berlin"}, platform="ios" if index else "android")
    registered_device(org, device_id="p", labels={"site": "paris"})
    create_group(client_a, slug="berlin", selector=BERLIN)
    body = client_a.get("/api/v1/device-groups/berlin/devices?limit=2").json()
    assert set(body) == {"devices", "total", "limit", "offset"} and body["total"] == 3 and len(body["devices"]) == 2
    assert set(body["devices"][0]) == set(client_a.get("/api/v1/devices").json()["devices"][0])
    assert client_a.get("/api/v1/device-groups/berlin/devices?platform=ios").json()["total"] == 2
    assert client_a.get("/api/v1/device-groups/nope/devices").status_code == 404


def test_query_counts_do_not_grow_with_page_size(client_a, org, django_assert_max_num_queries):
    for index in range(30):
        registered_device(org, device_id=f"d-{index}", labels={"site": "berlin"})
    for index in range(15):
        create_group(client_a, slug=f"g-{index}", selector=BERLIN)
    with django_assert_max_num_queries(8):
        assert len(client_a.get("/api/v1/device-groups?limit=2").json()["device_groups"]) == 2
    with django_assert_max_num_queries(8):
        assert len(client_a.get("/api/v1/device-groups?limit=15").json()["device_groups"]) == 15
    with django_assert_max_num_queries(12) as small:
        assert len(client_a.get("/api/v1/device-groups/g-0/devices?limit=2").json()["devices"]) == 2
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(client_a.get("/api/v1/device-groups/g-0/devices?limit=30").json()["devices"]) == 30
    device = Device.objects.filter(organization=org).first() if False else None
    del device
    with django_assert_max_num_queries(8):
        assert client_a.get("/api/v1/devices/d-0/groups").json()["total"] == 15


# --- bulk labels ---------------------------------------------------------------------------------------
def labels_of(org):
    with rls.bypass(reason="test"):
        return dict(Device.objects.filter(organization=org).values_list("device_id", "labels"))


def test_bulk_labels_on_a_selector(client_a, org):
    for index in range(3):
        registered_device(org, device_id=f"b-{index}", labels={"site": "berlin", "old": "x"})
    registered_device(org, device_id="p", labels={"site": "paris"})
    registered_device(org, device_id="done", labels={"site": "berlin", "tier": "gold"})
    gold = group_row(create_group(client_a, slug="gold", selector={"match_labels": {"tier": "gold"}}))
    response = client_a.post("/api/v1/devices/bulk/labels", {
        "target": {"selector": BERLIN}, "set": {"tier": "gold"}, "remove": ["old"]}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {"matched": 4, "changed": 3}
    labels = labels_of(org)
    assert labels["b-0"] == {"site": "berlin", "tier": "gold"} and labels["p"] == {"site": "paris"}
    assert members(gold) == {"b-0", "b-1", "b-2", "done"} == expected(gold) and count(gold) == 4
    with rls.bypass(reason="test"):
        events = ActivityEvent.objects.filter(organization=org, verb="devices.labels_bulk_changed")
        assert events.count() == 1 and events.get().data["changed"] == 3 and events.get().data["matched"] == 4
    again = client_a.post("/api/v1/devices/bulk/labels", {
        "target": {"selector": BERLIN}, "set": {"tier": "gold"}}, format="json")
    assert again.json() == {"matched": 4, "changed": 0}


def test_bulk_labels_on_a_group_and_on_ids(client_a, org):
    a = registered_device(org, device_id="a")
    registered_device(org, device_id="b")
    create_group(client_a, slug="pilot", kind="static")
    client_a.post("/api/v1/device-groups/pilot/members", {"device_ids": ["a"]}, format="json")
    berlin = group_row(create_group(client_a, slug="berlin", selector=BERLIN))
    response = client_a.post("/api/v1/devices/bulk/labels", {"target": {"group": "pilot"}, "set": {"site": "berlin"}},
                             format="json")
    assert response.json() == {"matched": 1, "changed": 1}
    assert members(berlin) == {"a"}
    response = client_a.post("/api/v1/devices/bulk/labels", {"target": {"device_ids": [str(a.id), "b"]},
                                                              "remove": ["site"]}, format="json")
    assert response.json() == {"matched": 2, "changed": 1}
    assert members(berlin) == set() and labels_of(org) == {"a": {}, "b": {}}


def test_bulk_labels_rejects_bad_requests_whole(client_a, org, other_org):
    full = registered_device(org, device_id="full", labels={f"k{i}": "v" for i in range(63)})
    registered_device(org, device_id="small")
    foreign = registered_device(other_org)
    url = "/api/v1/devices/bulk/labels"
    response = client_a.post(url, {"target": {"selector": {}}, "set": {"x1": "a", "x2": "b"}}, format="json")
    assert response.status_code == 400 and "set" in response.json()["fields"]
    assert labels_of(org)["small"] == {}  # nothing changed anywhere
    # replacing an existing key does not add one; a new key beside it does
    assert client_a.post(url, {"target": {"device_ids": ["full"]}, "set": {"k0": "w"}}, format="json").status_code == 200
    assert client_a.post(url, {"target": {"device_ids": ["full"]}, "set": {"k0": "v", "x1": "a"}},
                         format="json").status_code == 200  # 64
    response = client_a.post(url, {"target": {"selector": {}}, "set": {"k1": "w", "x2": "b"}}, format="json")
    assert response.status_code == 400 and response.json()["fields"]["set"] == [
        "1 device(s) would have more than 64 labels; nothing was changed."]
    assert client_a.post(url, {"target": {"device_ids": [str(foreign.id)]}, "set": {"a": "b"}},
                         format="json").status_code == 400
    assert client_a.post(url, {"target": {"group": "nope"}, "set": {"a": "b"}}, format="json").status_code == 400
    assert client_a.post(url, {"target": {}, "set": {"a": "b"}}, format="json").status_code == 400
    assert client_a.post(url, {"target": {"selector": {}}}, format="json").status_code == 400
    assert client_a.post(url, {"target": {"selector": {}}, "set": {"a": "b"}, "remove": ["a"]},
                         format="json").status_code == 400
    assert client_a.post(url, {"target": {"selector": {}}, "set": {"bad key!": "b"}}, format="json").status_code == 400
    assert client_a.post(url, {"target": {"selector": {"match_expressions": [{"key": "a", "operator": "In"}]}},
                               "set": {"a": "b"}}, format="json").status_code == 400
    del full


def test_bulk_is_not_captured_by_device_routes(client_a, org):
    assert client_a.get("/api/v1/devices/bulk/labels").status_code == 405


# --- services --------------------------------------------------------------------------------------------
def test_selector_edit_is_set_based(org, org_context, statements):
    from django.db import connection

    org_context(org)
    for index in range(40):
        DeviceFactory(organization=org, labels={"n": str(index % 2)})
    group = services.device_group_create(organization=org, actor=SYSTEM, name="even", slug="even",
                                         selector={"match_labels": {"n": "0"}})
    assert group.member_count == 20
    with statements() as captured:
        services.device_group_update(group=group, actor=SYSTEM, selector={"match_labels": {"n": "1"}})
    assert group.member_count == 20 and members(group) == expected(group)
    writes = [q for q in captured.sql if q.split()[0].upper() in ("INSERT", "DELETE", "WITH")
              and "devicegroupmembership" in q]
    # Never one per device: on PostgreSQL one statement (moves, deletes, inserts), elsewhere a DELETE and an INSERT.
    assert len(writes) == (1 if connection.vendor == "postgresql" else 2)
    assert len(captured) < 15


def test_a_label_change_reads_the_devices_once_for_all_groups(org, org_context, statements):
    """Re-evaluating many dynamic groups reads the devices once per statement (not once per group), and
    the DELETE and INSERT are anti-joins whose inner side is an index (the device's primary key, the
    (group, device) primary key): linear whatever the statistics estimate. A NOT IN (subquery) larger
    than work_mem, or an anti-join against the derived wanted pairs misestimated as one row, is a
    re-scan per row."""
    from django.db import connection

    org_context(org)
    for index in range(30):
        DeviceFactory(organization=org, labels={"site": f"s{index % 3}"})
    groups = [services.device_group_create(organization=org, actor=SYSTEM, name=f"s{n}", slug=f"s{n}",
                                           selector={"match_labels": {"site": f"s{n}"}}) for n in range(3)]
    everyone = services.device_group_create(organization=org, actor=SYSTEM, name="all", slug="all", selector={})
    with statements() as captured:
        result = services.devices_bulk_labels(organization=org, actor=SYSTEM, target={"selector": {}},
                                              set_labels={"site": "s0"})
    assert result == {"matched": 30, "changed": 20}
    for group in [*groups, everyone]:
        group.refresh_from_db()
        assert members(group) == expected(group)
    assert [g.member_count for g in groups] == [30, 0, 0] and everyone.member_count == 30
    writes = [q for q in captured.sql if q.split()[0].upper() in ("INSERT", "DELETE", "WITH")
              and "devicegroupmembership" in q]
    assert len(writes) == (1 if connection.vendor == "postgresql" else 2)
    # The wanted pairs scan the devices once; each unwanted membership looks its device up by primary key.
    assert sum(sql.count('FROM "devices_device"') for sql in writes) == 2, writes
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for sql in writes:
                cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
                nodes = list(plan_nodes(cursor.fetchone()[0][0]["Plan"]))
                anti = [node for node in nodes if node.get("Join Type") == "Anti"]
                assert anti and not [n for n in nodes if n.get("Subplan Name", "").startswith("SubPlan")], nodes
                for join in anti:
                    [inner] = [p for p in join["Plans"] if p["Parent Relationship"] == "Inner"]
                    assert join["Node Type"] != "Nested Loop" or "Index" in inner["Node Type"], (join, inner)


def test_a_device_moving_between_groups_is_a_member_since_the_move(org, org_context):
    """A label value change moves devices between groups (on PostgreSQL by re-pointing their rows):
    the new membership starts at the change, the old one is gone, and the counts follow. One device
    leaves two groups for one, another leaves one for two, so rows are also deleted and inserted."""
    from django.utils import timezone

    org_context(org)
    mover = DeviceFactory(organization=org, labels={"site": "a"})
    leaver = DeviceFactory(organization=org, labels={"site": "a", "tier": "ny"})
    joiner = DeviceFactory(organization=org, labels={"site": "a"})
    groups = {name: services.device_group_create(organization=org, actor=SYSTEM, name=name, slug=name,
                                                 selector=selector)
              for name, selector in [("a", {"match_labels": {"site": "a"}}), ("b", {"match_labels": {"site": "b"}}),
                                     ("a-ny", {"match_labels": {"site": "a", "tier": "ny"}}),
                                     ("b-ny", {"match_labels": {"site": "b", "tier": "ny"}})]}
    assert members(groups["a"]) == {mover.device_id, leaver.device_id, joiner.device_id}
    before = timezone.now()
    services.devices_bulk_labels(organization=org, actor=SYSTEM, target={"device_ids": [str(mover.id)]},
                                 set_labels={"site": "b"})
    services.devices_bulk_labels(organization=org, actor=SYSTEM, target={"device_ids": [str(leaver.id)]},
                                 set_labels={"site": "b"}, remove=["tier"])
    services.devices_bulk_labels(organization=org, actor=SYSTEM, target={"device_ids": [str(joiner.id)]},
                                 set_labels={"site": "b", "tier": "ny"})
    for group in groups.values():
        assert members(group) == expected(group) and count(group) == len(members(group))
    assert members(groups["b"]) == {mover.device_id, leaver.device_id, joiner.device_id}
    assert members(groups["b-ny"]) == {joiner.device_id} and not members(groups["a"]) | members(groups["a-ny"])
    with rls.bypass(reason="test"):
        since = DeviceGroupMembership.objects.filter(group_id=groups["b"].id).values_list("created_at", flat=True)
    assert all(at >= before for at in since)


def plan_nodes(node):
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def test_static_group_rejects_a_selector(org, org_context):
    org_context(org)
    with pytest.raises(Exception) as exc:
        services.device_group_create(organization=org, actor=SYSTEM, name="s", slug="s", kind=GroupKind.STATIC,
                                     selector={"match_labels": {"a": "b"}})
    assert "selector" in exc.value.fields


def test_factories(org, org_context):
    org_context(org)
    group = DeviceGroupFactory(organization=org)
    assert group.kind == GroupKind.STATIC and group.member_count == 0
    assert DeviceStatus.REVOKED in NOT_MEMBERS
