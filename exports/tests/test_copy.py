"""CSV members written by PostgreSQL (COPY) are byte for byte what the Python path writes."""

import csv
import datetime as dt
import io
import re
import uuid
import zipfile
from functools import partial

import pytest
from django.db import connection, transaction

from devices.tests.factories import DeviceFactory
from exports import archive, services
from exports.tests.factories import ExportJobFactory
from exports.tests.helpers import T0, add_readings, expected_readings
from fleet.tenancy import rls
from telemetry import services as telemetry_services
from telemetry.models import Annotation, Reading
from telemetry.tests.factories import AnnotationFactory
from telemetry.validation import Checked

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

METRICS = ["temp", "a,b", 'say "hi"', "line\nbreak", "crlf\r\nend", "ünïcødé ✓", ""]
VALUES = [
    0.0, -0.0, 1.0, -3.0, 21.5, 0.1, 2 / 3, 1e-05, 1.5e-07, 0.0001, 123456789012345.0, 1e15, -1e15 - 0.5,
    1e15 + 0.25, 9.999999999999998e15, 1e16, 2.5e16, 3.092535278770144e18, 1767225600123456789.0, 1e22,
    1.7976931348623157e308, 5e-324, float("inf"), float("-inf"), float("nan"),
]
MICROSECONDS = [0, 1, 500_000, 999_999, 120_000]


def write(job, queryset, rows, write_chunk):
    """One member through the keyset chunks with `write_chunk`: (its bytes, per-chunk counts, summary)."""
    buffer = io.BytesIO()
    with archive.open_archive(buffer) as zf:
        member = archive.Member(zf, "member.csv", rows.header, "csv")
        counts = list(services._chunks(job, queryset, rows, partial(write_chunk, member, rows)))
        summary = member.close()
    return zipfile.ZipFile(buffer).read("member.csv"), counts, summary


def both_ways(job, queryset, rows):
    by_copy = write(job, queryset, rows, services._copy_chunk)
    by_python = write(job, queryset, rows, services._python_chunk)
    return by_copy, by_python


def test_copy_writes_the_same_csv_as_python_for_tricky_values(org, settings):
    settings.EXPORT_CHUNK_ROWS = 4  # chunk ends fall on quoted metrics, so keys are read back from such rows
    settings.EXPORT_FETCH_ROWS = 3
    odd = DeviceFactory(organization=org, device_id='gw,"Zürich"\nnorth')
    plain = DeviceFactory(organization=org, device_id="plain-01")
    rows = [
        Checked(index=i, device=device, metric=metric, value=value,
                ts=T0 + dt.timedelta(seconds=i, microseconds=MICROSECONDS[i % len(MICROSECONDS)]))
        for device in (odd, plain)
        for i, (metric, value) in enumerate((m, v) for m in METRICS for v in VALUES)
    ]
    with rls.bypass(reason="test setup"):
        telemetry_services.readings_insert(organization=org, rows=rows)
    job = ExportJobFactory(organization=org, range_from=T0, range_to=T0 + dt.timedelta(days=1))

    (copied, copy_counts, copy_summary), (python, python_counts, python_summary) = both_ways(
        job, services._scope_readings(job), services.READINGS
    )
    assert copied == python
    assert copy_counts == python_counts and sum(copy_counts) == len(rows)
    assert copy_summary == python_summary
    assert b"1e+16" in copied and b"1000000000000000.0" in copied and b"nan" in copied  # the Python spellings


def test_copy_writes_the_same_annotations_csv(org, settings):
    settings.EXPORT_CHUNK_ROWS = 2
    device = DeviceFactory(organization=org, device_id="cam, \"left\"")
    texts = ["", "plain", "comma, here", 'a "quote"', "two\nlines", "windows\r\nline", "émoji 🚀"]
    for i, text in enumerate(texts):
        AnnotationFactory(
            organization=org, device=device, text=text, created_by="" if i % 2 else "ops, team",
            ts_from=T0 + dt.timedelta(minutes=i, microseconds=MICROSECONDS[i % len(MICROSECONDS)]),
            ts_to=None if i % 3 == 0 else T0 + dt.timedelta(hours=1, microseconds=i),
        )
    job = ExportJobFactory(organization=org, range_from=T0, range_to=T0 + dt.timedelta(days=1))

    (copied, copy_counts, _), (python, python_counts, _) = both_ways(
        job, services._scope_annotations(job), services.ANNOTATIONS
    )
    assert copied == python
    assert copy_counts == python_counts and sum(copy_counts) == len(texts)


def test_copy_quotes_a_lone_carriage_return(org):
    """The one deliberate difference: csv.writer leaves a lone \\r unquoted (a file its own reader
    rejects); COPY quotes it, so the value reads back intact."""
    device = DeviceFactory(organization=org)
    add_readings(org, device, 1, metric="cr\ronly")
    job = ExportJobFactory(organization=org, range_from=T0, range_to=T0 + dt.timedelta(days=1))
    copied, _, _ = write(job, services._scope_readings(job), services.READINGS, services._copy_chunk)
    rows = list(csv.reader(io.StringIO(copied.decode(), newline="")))
    assert rows[1][3] == "cr\ronly"


def test_copy_runs_under_row_level_security(org, other_org, settings):
    """COPY (SELECT …) TO runs as the runtime role: with no organization filter in the query, the
    policy alone keeps other organizations' rows out, and no organization at all means no rows."""
    settings.EXPORT_CHUNK_ROWS = 5
    add_readings(org, DeviceFactory(organization=org), 12)
    add_readings(other_org, DeviceFactory(organization=other_org), 9)
    job = ExportJobFactory(organization=org)

    copied, counts, _ = write(job, Reading.objects.all(), services.READINGS, services._copy_chunk)
    rows = list(csv.reader(io.StringIO(copied.decode())))[1:]
    assert rows == expected_readings(org, T0, T0 + dt.timedelta(days=1)) and sum(counts) == 12

    AnnotationFactory(organization=other_org)
    copied, counts, _ = write(job, Annotation.objects.all(), services.ANNOTATIONS, services._copy_chunk)
    assert counts == [0] and copied.decode() == ",".join(services.ANNOTATION_COLUMNS) + "\n"

    with archive.open_archive(io.BytesIO()) as zf, transaction.atomic():
        rls.deactivate()  # no organization (the test's outer transaction still holds the last one): fail closed
        member = archive.Member(zf, "member.csv", services.READINGS.header, "csv")
        queryset = Reading.objects.order_by(*services.READINGS.keys)
        try:
            assert services._copy_chunk(member, services.READINGS, queryset, 100) == (0, None)
        finally:
            member.close()


def test_a_readings_chunk_reads_only_columns_the_unique_index_holds(org):
    """The unique (device, metric, ts) index INCLUDEs org_id and value (telemetry migration 0004), so a
    readings chunk is an index-only scan. A column it reads that the index lacks would fetch the heap
    page of every reading again (2.6x instead of 1.6x the reference COPY, docs/performance.md)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT array_agg(a.attname::text) FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indexrelid = 'reading_unique_device_metric_ts'::regclass"
        )
        indexed = set(cursor.fetchone()[0])
    assert indexed == {"device_id", "metric", "ts", "org_id", "value"}

    job = ExportJobFactory(organization=org)
    rows = services.READINGS
    last = (uuid.uuid4(), "temp", T0)
    chunk = services._scope_readings(job).filter(services._after(rows.keys, last)).order_by(*rows.keys)
    sql, _ = chunk.values_list(*rows.sql)[:10].query.sql_with_params()
    read = set(re.findall(r'"telemetry_reading"\."(\w+)"', sql))
    assert read and read <= indexed, read - indexed
