import csv
import datetime as dt
import hashlib
import io
import json
import zipfile

from fleet.tenancy import rls
from telemetry import services as telemetry_services
from telemetry.models import Annotation, Reading
from telemetry.validation import Checked

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def iso(value):
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else ""


def add_readings(org, device, n, metric="temp", start=T0, step_s=60):
    rows = [
        Checked(index=i, device=device, metric=metric, ts=start + dt.timedelta(seconds=i * step_s), value=i * 0.5)
        for i in range(n)
    ]
    with rls.bypass(reason="test setup"):
        telemetry_services.readings_insert(organization=org, rows=rows)


def expected_readings(org, ts_from, ts_to, device=None):
    """The direct query the export must equal."""
    with rls.bypass(reason="test expectation"):
        queryset = Reading.objects.filter(organization=org, ts__gte=ts_from, ts__lt=ts_to)
        if device is not None:
            queryset = queryset.filter(device=device)
        return [
            [iso(r.ts), str(r.device_id), r.device.device_id, r.metric, repr(float(r.value))]
            for r in queryset.select_related("device").order_by("device_id", "metric", "ts")
        ]


def expected_annotations(org, device=None):
    with rls.bypass(reason="test expectation"):
        queryset = Annotation.objects.filter(organization=org)
        if device is not None:
            queryset = queryset.filter(device=device)
        return [
            [str(a.id), str(a.device_id), a.device.device_id, a.annotation_class.name, iso(a.ts_from), iso(a.ts_to),
             a.text, a.created_by, iso(a.created_at)]
            for a in queryset.select_related("device", "annotation_class").order_by("ts_from", "id")
        ]


def read_zip(data):
    """{member: bytes} of a zip, after checking every member's CRC and the manifest's sha256."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    members = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(members["manifest.json"])
    for name, info in manifest["members"].items():
        assert hashlib.sha256(members[name]).hexdigest() == info["sha256"], name
        assert len(members[name]) == info["bytes"]
    return members, manifest


def csv_rows(data):
    rows = list(csv.reader(io.StringIO(data.decode())))
    return rows[0], rows[1:]
