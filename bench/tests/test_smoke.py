"""The benchmark harness on tiny data, so it cannot rot (timings are not checked here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_harness_runs_every_benchmark_on_tiny_data(tmp_path):
    output = tmp_path / "latest.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--mode", "smoke", "--port", "8196", "--database", "fleet_bench_smoke",
         "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    names = {r["name"] for r in report["results"]}
    assert names == {"heartbeat", "device_list", "sync_unchanged", "desired_state_304", "readings_ingest", "export",
                     "export_rss_1m_vs_100k", "materialize", "bulk_labels"}
    for line in result.stdout.splitlines():
        assert " ratio=" in line and line.endswith(("pass", "FAIL"))
    # Every interleaved benchmark reports its pairs as measured (smoke mode: one pair).
    assert all(len(r["pairs"]) == 1 and len(r["pairs"][0]) == 2
               for r in report["results"] if r["name"] != "export_rss_1m_vs_100k"), report["results"]
    heartbeat = next(r for r in report["results"] if r["name"] == "heartbeat")
    # Statements per (steady) heartbeat, authentication included: on PostgreSQL the credential function
    # and one UPDATE, none when its lease answers (devices.presence); and no request failed on the server.
    assert heartbeat["extra"]["sql_statements"] == 2, heartbeat["extra"]["statements"]
    assert heartbeat["extra"]["presence"] and heartbeat["extra"]["sql_statements_leased"] == 0
    assert heartbeat["extra"]["errors"] == 0 and heartbeat["extra"]["server_errors"] == 0
    # A 304 and an unchanged sync answer from the stored revision: the same two statements, or none.
    for name, status in (("sync_unchanged", "200"), ("desired_state_304", "304")):
        result = next(r for r in report["results"] if r["name"] == name)
        assert result["extra"]["sql_statements"] == 2 and set(result["extra"]["status_counts"]) == {status}, result
        assert result["extra"]["sql_statements_leased"] == 0, result
    assert report["machine"]["cores"] >= 1 and report["machine"]["postgresql"]
    # What each part of the run took, so that a full run's time can be accounted for.
    assert set(report["phases"]) == {"setup", "heartbeat", "device_list", "sync", "readings_ingest", "export",
                                     "materialize"}, report["phases"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_seed_fleet_command_generates_a_fleet(capsys):
    from django.core.management import call_command
    from django.utils import timezone

    from devices.models import Device, DeviceGroup
    from devices.services import connectivity_at
    from fleet.tenancy import rls
    from telemetry.models import Reading

    call_command("seed_fleet", org="seeded", devices=120, readings_per_device=3, groups=4)
    output = capsys.readouterr().out
    assert "120 devices" in output and "360 readings" in output and "4 groups" in output
    with rls.bypass(reason="test"):
        devices = list(Device.objects.filter(organization__slug="seeded"))
        assert len(devices) == 120
        # A running fleet, offline since its last heartbeat, as the sweep would have left it.
        now = timezone.now()
        for device in devices:
            assert device.created_at < device.last_heartbeat < now and device.attention == 0
            assert device.connectivity_status == connectivity_at(
                last_heartbeat=device.last_heartbeat, interval_s=device.heartbeat_interval_s, now=now) == "offline"
            assert device.stale_at < device.offline_at < now
        assert Reading.objects.filter(organization__slug="seeded").count() == 360
        groups = DeviceGroup.objects.filter(organization__slug="seeded")
        assert groups.count() == 4 and all(group.member_count > 0 for group in groups)
