"""`make bench` / `make bench-quick`: the hot paths, each as a ratio against a reference measured
in the same run, interleaved (A B A B …, median of the pairs).

    python -m bench.run [--mode full|quick|smoke] [--port 8199]

Needs PostgreSQL (PG_ADMIN_URL, default postgres@127.0.0.1) and Redis (REDIS_URL, default db 13).
It recreates its own database (PG_DATABASE, default fleet_bench), migrates it, seeds a fleet with
set-based SQL, serves the app with gunicorn and fleet/gunicorn_conf.py (the `make run`
configuration), and drives it from a separate load-generator process (bench/loadgen.py).
Results: one line per benchmark on stdout and bench/results/latest.json.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

SIZES = {
    # sync_tokens: devices the sync benchmarks rotate over (their revisions are computed up front).
    # pairs: the timed operations; rate_pairs: the request-rate benchmarks. Full runs take 5 of each: the
    # machine is shared and switches speed every few seconds, and a timed operation's first pair can
    # differ in kind (bulk labels' first change inserts the seeded devices' memberships; later ones move
    # them), so with 3 pairs one odd pair moves the median.
    "full": dict(devices=100_000, tokens=10_000, sync_tokens=2_000, readings=10, groups=10, pairs=5, rate_pairs=5,
                 seconds=5.0, small_export=100_000),
    "quick": dict(devices=10_000, tokens=1_000, sync_tokens=1_000, readings=5, groups=5, pairs=3, rate_pairs=3,
                  seconds=1.5, small_export=10_000),
    "smoke": dict(devices=300, tokens=40, sync_tokens=40, readings=3, groups=2, pairs=1, rate_pairs=1, seconds=0.5,
                  small_export=100),
}
TARGETS = {
    "heartbeat": (">=", 0.5),
    "device_list": (">=", 0.6),
    "sync_unchanged": (">=", 0.7),
    "desired_state_304": (">=", 0.9),
    "readings_ingest": (">=", 0.25),
    "export": ("<=", 2.5),
    "export_rss_1m_vs_100k": ("<=", 1.2),
    "materialize": ("<=", 1.5),
    "bulk_labels": ("<=", 1.5),
}


# --- environment -----------------------------------------------------------------------------------------
def prepare_environment(database):
    """Recreate the bench database, point this process (and the server) at it, then set Django up."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import pg_setup
    import psycopg

    pg_setup.DATABASE = database
    with psycopg.connect(pg_setup.ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    pg_setup.setup()
    os.environ.update(
        {
            "DATABASE_URL": pg_setup.url(pg_setup.RUNTIME),
            "MIGRATION_DATABASE_URL": pg_setup.url(pg_setup.OWNER),
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
            "DJANGO_SETTINGS_MODULE": "fleet.settings",
            "DEBUG": "0",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-" + "x" * 40),
            "BENCH_VIEWS": "1",
            "ACCESS_LOG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "SECURE_COOKIES": "0",
            "SECURE_HSTS_SECONDS": "0",
            "VAR_DIR": str(ROOT / "var" / "bench"),
            # Rate limits are a separate concern (issue 11): lift them so they never cap a figure.
            **{f"RATE_LIMIT_{kind}": "1000000000/60" for kind in ("API_KEY", "USER", "DEVICE", "APP_KEY",
                                                                  "PUBLISHABLE_KEY", "ANONYMOUS")},
        }
    )
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    call_command("migrate", verbosity=0)


def admin_connection():
    """The reference COPYs run as the PostgreSQL superuser: COPY FROM is refused under row-level
    security, which is also why the ingest path itself is INSERT … SELECT FROM unnest(…)."""
    import psycopg
    from django.conf import settings

    sys.path.insert(0, str(ROOT / "scripts"))
    import pg_setup

    return psycopg.connect(pg_setup.ADMIN_URL.rsplit("/", 1)[0] + "/" + settings.DATABASES["default"]["NAME"])


def vacuum(*tables):
    with admin_connection() as conn:
        conn.autocommit = True  # VACUUM cannot run in a transaction
        conn.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")


# --- measuring ---------------------------------------------------------------------------------------------
def loadgen(spec):
    """Run the load generator in its own process; returns its JSON report."""
    result = subprocess.run([PY, "-m", "bench.loadgen"], input=json.dumps(spec), capture_output=True, text=True,
                            cwd=ROOT, check=True)
    return json.loads(result.stdout)


def interleaved(subject, reference, pairs):
    """A B A B …: the median of the per-pair ratios (subject / reference), the medians of each side, and
    every pair as measured (in the JSON report: a pair whose sides ran at different machine speeds
    shows there)."""
    return interleaved_around(reference, [subject], pairs)[0]


def interleaved_around(reference, subjects, pairs):
    """`interleaved` for several subjects measured against the same reference runs, which sit between
    them (A B C A B C … for two): one result per subject."""
    measured = [[] for _ in subjects]
    for _ in range(pairs):
        first = subjects[0]()
        b = reference()
        rest = [subject() for subject in subjects[1:]]
        for column, a in zip(measured, [first, *rest], strict=True):
            column.append((a, b))
    results = []
    for column in measured:
        ratios = [a / b if b else 0.0 for a, b in column]
        results.append((statistics.median(ratios), statistics.median(a for a, _ in column),
                        statistics.median(b for _, b in column), [[round(a, 3), round(b, 3)] for a, b in column]))
    return results


def verdict(name, ratio):
    op, target = TARGETS[name]
    ok = ratio >= target if op == ">=" else ratio <= target
    return target, "pass" if ok else "FAIL"


class Server:
    """gunicorn with the `make run` configuration, on loopback."""

    def __init__(self, port):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = None

    def __enter__(self):
        env = {**os.environ, "BIND": f"127.0.0.1:{self.port}"}
        # Server output goes to a file: an unread pipe fills up and then blocks the workers.
        self.log_path = ROOT / "bench" / "results" / "gunicorn.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in __exit__
        self.process = subprocess.Popen(
            [PY, "-m", "gunicorn", "fleet.wsgi:application", "--config", "fleet/gunicorn_conf.py"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        # Presence (devices.presence) answers steady polls from Redis only while its flush runs.
        self.flusher = subprocess.Popen([PY, "-m", "bench.flusher"], cwd=ROOT, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start: see {self.log_path}")

    def __exit__(self, *exc):
        for process in (self.flusher, self.process):
            process.terminate()
            process.wait(timeout=30)
        self.log.close()


# --- the benchmarks -------------------------------------------------------------------------------------------
def steady_statements(fn):
    """Statements of a steady request: on PostgreSQL's steady path (presence off), and answered from its
    lease in Redis (devices.presence; the request before writes the lease if there was none)."""
    from django.test import override_settings

    with override_settings(PRESENCE=False):
        postgresql = sql_statements(fn)
    fn()
    return postgresql, sql_statements(fn)


def sql_statements(fn):
    """Statements a request runs, transaction control excluded."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        fn()
    skip = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT")
    return [q["sql"] for q in captured.captured_queries if not q["sql"].upper().startswith(skip)]


def bench_heartbeat(ctx, size):
    body = json.dumps({"status": "active", "metrics": {"cpu_usage_percent": 12.5, "battery_level": 80}})
    requests = [
        [f"/api/v1/devices/{uuid}/heartbeat", {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}, body]
        for uuid, _, secret in ctx["tokens"]
    ]
    spec = dict(url=ctx["server"].url, method="PUT", requests=requests, connections=8, duration_s=size["seconds"])
    ping = dict(url=ctx["server"].url, method="GET", requests=[["/bench/ping", {}, ""]], connections=8,
                duration_s=size["seconds"])
    # Steady state: the seeded devices are offline, so a device's first heartbeat is a reconnection
    # (the full path: a transition); its second takes PostgreSQL's steady path, which stores its lease
    # (devices.presence) for the ones after. Two passes over the tokens do that first, each reported
    # on its own.
    first = loadgen({**spec, "once": True})
    second = loadgen({**spec, "once": True})
    ctx["warmed"] = True
    vacuum("devices_device", "devices_devicetoken")  # so autovacuum does not start mid-measurement
    runs = {"subject": [], "reference": []}

    def subject():
        report = loadgen(spec)
        runs["subject"].append(report)
        return report["rps"]

    def reference():
        report = loadgen(ping)
        runs["reference"].append(report)
        return report["rps"]

    ratio, a, b, pairs = interleaved(subject, reference, size["rate_pairs"])
    from django.conf import settings
    from django.test import Client

    uuid, _, secret = ctx["tokens"][0]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    statements, leased = steady_statements(
        lambda: client.put(f"/api/v1/devices/{uuid}/heartbeat", body, content_type="application/json")
    )
    ctx["heartbeat_rps"] = a
    cpu = statistics.median(r["cpu_seconds"] / r["seconds"] for r in runs["subject"])
    return dict(name="heartbeat", ratio=ratio, subject=a, reference=b, pairs=pairs, unit="req/s",
                extra={"sql_statements": len(statements), "statements": statements,
                       "sql_statements_leased": len(leased), "presence": settings.PRESENCE,
                       "first_heartbeat_rps": first["rps"], "second_heartbeat_rps": second["rps"],
                       "loadgen_cpu_share": round(cpu, 2),
                       "errors": sum(r["errors"] for r in runs["subject"]),
                       "server_errors": sum(r["server_errors"] for r in runs["subject"]),
                       "connection_exceptions": sum(len(r["exceptions"]) for r in runs["subject"])})


def bench_device_list(ctx, size):
    auth = {"Authorization": f"Bearer {ctx['api_key']}"}
    spec = dict(url=ctx["server"].url, method="GET", connections=4, duration_s=size["seconds"],
                requests=[[f"/api/v1/devices?label[site]=site-{i}&limit=100", auth, ""] for i in range(10)])
    ref = dict(url=ctx["server"].url, method="GET", connections=4, duration_s=size["seconds"],
               requests=[[f"/bench/devices?org={ctx['org'].slug}&site=site-{i}&limit=100", {}, ""] for i in range(10)])
    ratio, a, b, pairs = interleaved(lambda: loadgen(spec)["rps"], lambda: loadgen(ref)["rps"], size["rate_pairs"])
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=auth["Authorization"])
    counts = {limit: len(sql_statements(lambda limit=limit: client.get("/api/v1/devices", {"label[site]": "site-1", "limit": limit})))
              for limit in (10, 1000)}
    return dict(name="device_list", ratio=ratio, subject=a, reference=b, pairs=pairs, unit="req/s",
                extra={"queries_limit_10": counts[10], "queries_limit_1000": counts[1000]})


def bench_sync(ctx, size):
    synced = [token for token in ctx["tokens"] if token[0] in ctx["revisions"]]
    headers = lambda secret: {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}  # noqa: E731
    sync = dict(url=ctx["server"].url, method="POST", connections=8, duration_s=size["seconds"],
                requests=[[f"/api/v1/devices/{u}/sync", headers(s), json.dumps({"known_revision": ctx["revisions"][u]})]
                          for u, _, s in synced])
    desired = dict(url=ctx["server"].url, method="GET", connections=8, duration_s=size["seconds"],
                   requests=[[f"/api/v1/devices/{u}/desired-state",
                              {**headers(s), "If-None-Match": f'"{u}-{ctx["revisions"][u]}"'}, ""]
                             for u, _, s in synced])
    body = json.dumps({"status": "active"})
    heartbeat = dict(url=ctx["server"].url, method="PUT", connections=8, duration_s=size["seconds"],
                     requests=[[f"/api/v1/devices/{u}/heartbeat", headers(s), body] for u, _, s in synced])
    statuses = {}
    if not ctx.get("warmed"):  # the heartbeat benchmark's warm-up passes, when it did not run
        loadgen({**heartbeat, "once": True})
        loadgen({**heartbeat, "once": True})
        vacuum("devices_device", "devices_devicetoken")
    # The steady state, both sides alike: a token records its last use at most once a minute (a write,
    # so a commit that waits for the WAL), and the benchmarks before this one may have run for longer.
    # One sync per token first, so that neither side of the first pairs pays all those writes.
    first_sync = loadgen({**sync, "once": True})

    def run(spec, key):
        report = loadgen(spec)
        statuses.setdefault(key, []).append(report["status_counts"])
        return report["rps"]

    # Sync, heartbeat, 304, sync, …: each heartbeat run is the reference of the runs on either side of it.
    (sync_ratio, sync_rps, hb1, sync_pairs), (ds_ratio, ds_rps, hb2, ds_pairs) = interleaved_around(
        lambda: run(heartbeat, "hb"), [lambda: run(sync, "sync"), lambda: run(desired, "desired")], size["rate_pairs"])
    from django.test import Client

    (path, sync_headers, sync_body), (desired_path, desired_headers, _) = sync["requests"][0], desired["requests"][0]
    client = Client(HTTP_AUTHORIZATION=sync_headers["Authorization"])
    counts = {
        "sync": steady_statements(lambda: client.post(path, sync_body, content_type="application/json")),
        "desired": steady_statements(
            lambda: client.get(desired_path, HTTP_IF_NONE_MATCH=desired_headers["If-None-Match"])),
    }
    return [
        dict(name="sync_unchanged", ratio=sync_ratio, subject=sync_rps, reference=hb1, pairs=sync_pairs, unit="req/s",
             extra={"status_counts": statuses["sync"][-1], "first_sync_rps": first_sync["rps"],
                    "sql_statements": len(counts["sync"][0]), "sql_statements_leased": len(counts["sync"][1])}),
        dict(name="desired_state_304", ratio=ds_ratio, subject=ds_rps, reference=hb2, pairs=ds_pairs, unit="req/s",
             extra={"status_counts": statuses["desired"][-1], "sql_statements": len(counts["desired"][0]),
                    "sql_statements_leased": len(counts["desired"][1])}),
    ]


# Readings batches (1,000 readings each) built per second of an ingest run: over twice what the reference
# COPY takes in on this machine, without building batches that are never sent.
BATCHES_PER_SECOND = 150


def bench_readings(ctx, size):
    """Readings/s committed through POST /readings/batch (1,000 per request, 4 clients) vs COPY."""
    from datetime import UTC, datetime, timedelta

    from fleet.tenancy import rls
    from telemetry.models import Reading

    base = datetime(2030, 1, 1, tzinfo=UTC)
    tokens = ctx["tokens"][: max(4, min(200, len(ctx["tokens"])))]
    offsets = {"next": 0}

    def bodies(count):
        result = []
        for n in range(count):
            uuid, _, secret = tokens[n % len(tokens)]
            start = offsets["next"]
            offsets["next"] += 1000
            readings = [{"metric": "load", "ts": (base + timedelta(seconds=start + i)).isoformat(), "value": i * 0.5}
                        for i in range(1000)]
            result.append(["/api/v1/readings/batch",
                           {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
                           json.dumps({"readings": readings})])
        return result

    def count():
        with rls.organization_context(org_id=ctx["org"].id):
            return Reading.objects.filter(metric="load").count()

    last = {}

    def subject():
        before = count()
        # Every batch is new: one sent twice would insert nothing.
        report = loadgen(dict(url=ctx["server"].url, method="POST", connections=4, duration_s=size["seconds"],
                              distinct=True, requests=bodies(int(BATCHES_PER_SECOND * size["seconds"]))))
        if report["ran_out"]:
            raise RuntimeError("readings_ingest sent every batch it had before the end: raise BATCHES_PER_SECOND")
        last["rows"] = count() - before
        return last["rows"] / report["seconds"]

    def reference():
        rows = last["rows"] or 1000
        device_ids = [t[0] for t in tokens]
        import uuid as uuidlib

        start = time.perf_counter()
        with admin_connection() as conn, conn.cursor() as cursor:
            with cursor.copy(f"COPY {Reading._meta.db_table} (id, org_id, device_id, metric, ts, value) FROM STDIN") as copy:
                for i in range(rows):
                    copy.write_row((uuidlib.uuid4(), ctx["org"].id, device_ids[i % len(device_ids)], "copy",
                                    base + timedelta(seconds=offsets["next"] + i), i * 0.5))
        offsets["next"] += rows
        return rows / (time.perf_counter() - start)

    ratio, a, b, pairs = interleaved(subject, reference, size["pairs"])
    # Leave the table as seeded: the export benchmark reads it next, through the same index.
    with admin_connection() as conn:
        removed = conn.execute(f"DELETE FROM {Reading._meta.db_table} WHERE metric IN ('load', 'copy')").rowcount
    vacuum(Reading._meta.db_table)
    return dict(name="readings_ingest", ratio=ratio, subject=a, reference=b, pairs=pairs, unit="readings/s",
                extra={"rows_removed_after": removed})


def bench_export(ctx, size):
    """Wall time of an export job (task start → object stored) vs COPY of the same SELECT, drained."""
    from datetime import timedelta

    from django.db import connection

    from exports import services as export_services
    from fleet.activity.services import SYSTEM
    from fleet.tenancy import rls

    from . import seed

    start, end = seed.reading_window(per_device=size["readings"])

    def make_job(end_at):
        with rls.organization_context(org_id=ctx["org"].id):
            job = export_services.export_create(
                organization=ctx["org"], actor=SYSTEM, scope_type="ORGANIZATION", ts_from=start, ts_to=end_at,
                includes=["READINGS"],
            )
            return job.id

    def probe(job_id):
        out = subprocess.run([PY, "-m", "bench.export_probe", str(job_id), str(ctx["org"].id)],
                             capture_output=True, text=True, cwd=ROOT, env=os.environ, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    runs = []

    def subject():
        result = probe(make_job(end))
        runs.append(result)
        return result["seconds"]

    def reference():
        began = time.perf_counter()
        with rls.organization_context(org_id=ctx["org"].id):
            with connection.cursor() as cursor:
                query = (
                    "COPY (SELECT r.ts, r.device_id, d.device_id, r.metric, r.value FROM telemetry_reading r "
                    "JOIN devices_device d ON d.id = r.device_id WHERE r.ts >= %s AND r.ts < %s ORDER BY r.ts) "
                    "TO STDOUT (FORMAT csv)"
                )
                with cursor.copy(query, [start, end]) as copy:
                    for _ in copy:
                        pass
        return time.perf_counter() - began

    ratio, a, b, pairs = interleaved(subject, reference, size["pairs"])
    # Memory: the same export over about a tenth of the rows (every device has one reading a minute).
    minutes = max(1, size["small_export"] // max(1, ctx["devices"]))
    small = probe(make_job(start + timedelta(minutes=minutes + 1)))
    rss_ratio = runs[-1]["maxrss_kb"] / small["maxrss_kb"]
    return [
        dict(name="export", ratio=ratio, subject=a, reference=b, pairs=pairs, unit="s",
             extra={"readings": runs[-1]["readings"], "maxrss_kb": runs[-1]["maxrss_kb"]}),
        dict(name="export_rss_1m_vs_100k", ratio=rss_ratio, subject=runs[-1]["maxrss_kb"],
             reference=small["maxrss_kb"], unit="KB", extra={"small_readings": small["readings"]}),
    ]


def bench_materialize(ctx, size):
    """Start a deployment targeting every device (assignments committed) vs COPY of as many rows."""
    from django.db import transaction
    from django.utils import timezone

    from deployments import services as deployment_services
    from deployments.models import DeviceAssignment
    from deployments.tests.factories import public_variant
    from devices import services as device_services
    from devices.models import Device
    from fleet.activity.services import SYSTEM
    from fleet.tenancy import rls

    def new_deployment():
        from apps_catalog.models import ModelCapability

        return deployment_services.deployment_create(
            organization=ctx["org"], actor=SYSTEM, capability=ModelCapability.objects.get(key="vision"),
            variant=public_variant(index=2), targeting={"selector": {}}, strategy={"type": "staged", "stages": [50, 100]},
            environment="staging",
        )

    # Each step rewrites 100,000-200,000 rows and the previous one left as many dead: vacuum first (untimed),
    # as autovacuum would between two such operations (it is off on some clusters, and would otherwise
    # start mid-measurement).
    written = ("devices_device", "devices_devicegroupmembership", DeviceAssignment._meta.db_table)

    def subject():
        with rls.organization_context(org_id=ctx["org"].id):
            deployment = new_deployment()
        vacuum(*written)
        began = time.perf_counter()
        with rls.organization_context(org_id=ctx["org"].id):
            deployment_services.deployment_start(deployment=deployment, actor=SYSTEM)
        seconds = time.perf_counter() - began
        with rls.organization_context(org_id=ctx["org"].id):
            # Withdraw it, so later benchmarks do not keep re-materializing the benchmark's own rollouts.
            deployment_services.deployment_cancel(deployment=deployment, actor=SYSTEM)
            DeviceAssignment.objects.filter(deployment=deployment).delete()
        return seconds

    def reference():
        with rls.organization_context(org_id=ctx["org"].id):
            deployment = new_deployment()
            device_ids = list(Device.objects.filter(organization=ctx["org"]).values_list("id", flat=True))
        now = timezone.now()
        vacuum(*written)
        began = time.perf_counter()
        with admin_connection() as conn, conn.cursor() as cursor:
            columns = "org_id, deployment_id, device_id, source, bucket, in_rollout, status, error, updated_at"
            with cursor.copy(f"COPY {DeviceAssignment._meta.db_table} ({columns}) FROM STDIN") as copy:
                for device_id in device_ids:
                    copy.write_row((ctx["org"].id, deployment.id, device_id, "selector", 7, True, "pending", "", now))
        seconds = time.perf_counter() - began
        with rls.organization_context(org_id=ctx["org"].id), transaction.atomic():
            DeviceAssignment.objects.filter(deployment=deployment).delete()
        return seconds

    flips = iter(range(1_000_000))

    def bulk_labels():
        # Every device moves to one site, alternately site-0 and site-1, which the groups select on: each
        # run re-materializes real membership changes (a label no selector reads would skip that work).
        vacuum(*written)
        began = time.perf_counter()
        with rls.organization_context(org_id=ctx["org"].id):
            result = device_services.devices_bulk_labels(
                organization=ctx["org"], actor=SYSTEM, target={"selector": {}},
                set_labels={"site": f"site-{next(flips) % 2}"},
            )
        seconds = time.perf_counter() - began
        assert result["changed"] >= ctx["devices"] * 0.9, result
        return seconds

    # Start a deployment, COPY, bulk labels, start a deployment, …: one reference for both.
    (ratio, a, b, pairs), (bulk_ratio, bulk_a, bulk_b, bulk_pairs) = interleaved_around(
        reference, [subject, bulk_labels], size["pairs"])
    return [
        dict(name="materialize", ratio=ratio, subject=a, reference=b, pairs=pairs, unit="s",
             extra={"devices": ctx["devices"]}),
        dict(name="bulk_labels", ratio=bulk_ratio, subject=bulk_a, reference=bulk_b, pairs=bulk_pairs, unit="s",
             extra={"devices": ctx["devices"], "groups": ctx["groups"]}),
    ]


# --- orchestration ---------------------------------------------------------------------------------------------
def setup_fleet(size):
    from deployments import control
    from deployments import services as deployment_services
    from deployments.tests.factories import public_variant
    from fleet.activity.services import SYSTEM
    from fleet.tenancy import rls, services

    from . import seed

    org = services.organization_create(slug="bench", name="Bench")
    facts = {}
    with rls.organization_context(org_id=org.id):
        facts["seed_devices_s"] = round(seed.seed_devices(organization=org, count=size["devices"]), 2)
        tokens = seed.seed_tokens(organization=org, limit=size["tokens"])
        began = time.perf_counter()
        facts["readings"] = seed.seed_readings(organization=org, per_device=size["readings"])
        facts["seed_readings_s"] = round(time.perf_counter() - began, 2)
        _, api_key = services.api_key_create(organization=org, name="bench")
    seed.analyze()  # statistics first: row-level-security predicates are planned from them
    with rls.organization_context(org_id=org.id):
        began = time.perf_counter()
        seed.seed_groups(organization=org, count=size["groups"])
        facts["seed_groups_s"] = round(time.perf_counter() - began, 2)
        from apps_catalog.models import ModelCapability

        deployment = deployment_services.deployment_create(
            organization=org, actor=SYSTEM, capability=ModelCapability.objects.get(key="vision"),
            variant=public_variant(), targeting={"selector": {}}, strategy={"type": "all_at_once"},
            environment="production",
        )
        deployment_services.deployment_start(deployment=deployment, actor=SYSTEM)
    seed.analyze()
    revisions = {}
    from devices.models import Device

    for uuid, _, _ in tokens[: size["sync_tokens"]]:
        with rls.organization_context(org_id=org.id):
            device = Device.objects.get(pk=uuid)
            desired, _, _ = control.desired_state(device=device, organization=org)
            revisions[uuid] = desired["revision"]
    return {"org": org, "tokens": tokens, "api_key": api_key, "revisions": revisions, "devices": size["devices"],
            "groups": size["groups"], "facts": facts}


def machine_facts():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    return {"cores": os.cpu_count(), "python": platform.python_version(), "postgresql": pg,
            "platform": platform.platform(), "gunicorn": "fleet/gunicorn_conf.py (WEB_CONCURRENCY x WEB_THREADS)",
            "web_concurrency": os.environ.get("WEB_CONCURRENCY", "2"), "web_threads": os.environ.get("WEB_THREADS", "4")}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=SIZES, default="full")
    parser.add_argument("--port", type=int, default=8199)
    parser.add_argument("--database", default=os.environ.get("PG_DATABASE_BENCH", "fleet_bench"))
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "latest.json"))
    parser.add_argument("--only", nargs="*", help="benchmark names to run")
    args = parser.parse_args(argv)
    size = SIZES[args.mode]
    began = time.time()
    prepare_environment(args.database)
    ctx = setup_fleet(size)
    phases = {"setup": round(time.time() - began, 1)}  # seconds each part of the run took
    results = []
    benchmarks = {"heartbeat": bench_heartbeat, "device_list": bench_device_list, "sync": bench_sync,
                  "readings_ingest": bench_readings, "export": bench_export, "materialize": bench_materialize}
    with Server(args.port) as server:
        ctx["server"] = server
        for name, fn in benchmarks.items():
            if args.only and name not in args.only:
                continue
            started = time.time()
            produced = fn(ctx, size)
            phases[name] = round(time.time() - started, 1)
            for result in produced if isinstance(produced, list) else [produced]:
                result["target"], result["verdict"] = verdict(result["name"], result["ratio"])
                results.append(result)
                print(f"{result['name']}: ratio={result['ratio']:.2f} subject={result['subject']:.2f} "
                      f"reference={result['reference']:.2f} target={TARGETS[result['name']][0]}{result['target']} "
                      f"{result['verdict']}", flush=True)
    report = {"mode": args.mode, "machine": machine_facts(), "setup": ctx["facts"], "sizes": size,
              "seconds": round(time.time() - began, 1), "phases": phases, "results": results}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
