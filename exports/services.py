"""Export jobs: create, run (claim → stream → finish), cancel, sweep, expire, signed downloads."""

import csv
import io
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F, Func, Q, TextField
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from devices import selectors as device_selectors
from devices.selectors import device_queryset
from fleet.activity.services import SYSTEM, record
from fleet.api.serializers import iso
from fleet.errors import DomainError, Invalid, NotFound
from fleet.tenancy import rls
from fleet.tenancy.models import Organization
from telemetry.selectors import (
    annotation_queryset,
    annotations_overlapping,
    readings_queryset,
)

from . import archive
from .models import ACTIVE, ExportJob, Format, Include, ScopeType, Status

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
RETRY_AFTER_S = 60  # Retry-After of the 429 when too many exports are pending or running
READING_COLUMNS = ["ts", "device", "device_id", "metric", "value"]
ANNOTATION_COLUMNS = ["id", "device", "device_id", "class", "ts_from", "ts_to", "text", "created_by", "created_at"]
STALE_ERROR = "The export worker stopped responding {n} times (no heartbeat for {s} s); giving up."


class ExportLimitReached(DomainError):
    code = "rate_limited"
    status = 429


class Stopped(Exception):
    """The job is no longer ours: cancelled, or re-queued by the sweeper after we went silent."""


def _iso(value):
    return iso(value) or ""


# --- create, cancel --------------------------------------------------------------------------------


def _enqueue(job):
    from . import tasks  # tasks import services

    job_id, org_id = str(job.id), str(job.organization_id)
    transaction.on_commit(lambda: tasks.export_run.delay(job_id, org_id))


@transaction.atomic
def export_create(
    *, organization, scope_type, ts_from, ts_to, includes, scope_id=None, format=Format.CSV, requested_by="", actor=SYSTEM  # noqa: A002
):
    if ts_from >= ts_to:
        raise Invalid("Must be after from.", field="to")
    max_days = settings.EXPORT_MAX_RANGE_DAYS
    if ts_to - ts_from > timedelta(days=max_days):
        raise Invalid(f"The range may span at most {max_days} days.", field="to")
    includes = [value for value in Include.values if value in set(includes)]
    if not includes:
        raise Invalid("Choose READINGS and/or ANNOTATIONS.", field="includes")
    if scope_type == ScopeType.DEVICE_GROUP:
        if scope_id is None:
            raise Invalid("A device group export needs the group's id.", field="scope_id")
        if device_selectors.group_queryset(organization=organization).filter(id=scope_id).first() is None:
            raise NotFound("No such device group.")
    elif scope_type == ScopeType.DEVICE:
        if scope_id is None:
            raise Invalid("A device export needs the device's id.", field="scope_id")
        if not device_queryset(organization=organization).filter(id=scope_id).exists():
            raise NotFound("No such device.")
    else:
        if scope_id is not None and scope_id != organization.id:
            raise NotFound("No such organization.")
        scope_id = organization.id
    # Serialize creations per organization so the running limit holds under concurrency.
    Organization.objects.select_for_update().filter(id=organization.id).first()
    active = ExportJob.objects.filter(organization=organization, status__in=ACTIVE).count()
    if active >= settings.EXPORT_MAX_RUNNING_PER_ORG:
        raise ExportLimitReached(
            f"At most {settings.EXPORT_MAX_RUNNING_PER_ORG} exports may be pending or running at once."
        )
    job = ExportJob.objects.create(
        organization=organization,
        scope_type=scope_type,
        scope_id=scope_id,
        range_from=ts_from,
        range_to=ts_to,
        includes=includes,
        format=format,
        requested_by=requested_by[:200],
    )
    record(
        organization=organization, actor=actor, verb="export.requested", subject_type="export", subject_id=job.id,
        data={"scope_type": scope_type, "scope_id": str(scope_id), "includes": includes, "format": format},
    )
    _enqueue(job)
    return job


def _delete_file(name):
    if not name:
        return
    try:
        default_storage.delete(name)
    except Exception:  # a missing file or a storage hiccup must not block the state change
        logger.warning("could not delete export file %s", name, exc_info=True)


@transaction.atomic
def export_cancel_or_delete(*, job, actor=SYSTEM):
    """Pending/running: CANCELLED (the worker stops at its next heartbeat and removes its file).
    Otherwise the file (if any) and the job are deleted. Returns "cancelled" or "deleted"."""
    if job.status in ACTIVE:
        updated = ExportJob.objects.filter(id=job.id, status__in=ACTIVE).update(
            status=Status.CANCELLED, completed_at=timezone.now()
        )
        if updated:
            record(organization=job.organization, actor=actor, verb="export.cancelled", subject_type="export", subject_id=job.id)
            return "cancelled"
        job.refresh_from_db()
    name = job.file_name
    record(organization=job.organization, actor=actor, verb="export.deleted", subject_type="export", subject_id=job.id)
    job.delete()
    transaction.on_commit(lambda: _delete_file(name))
    return "deleted"


@transaction.atomic
def export_rerun(*, job):
    """Admin action: a finished job (FAILED, CANCELLED, EXPIRED, READY) starts over."""
    if job.status in ACTIVE:
        raise Invalid("The export is already pending or running.", field="status")
    old_file = job.file_name
    ExportJob.objects.filter(id=job.id).update(
        status=Status.PENDING, attempts=0, progress=0.0, error="", started_at=None, completed_at=None,
        expires_at=None, size_bytes=None, reading_count=0, annotation_count=0, heartbeat_at=None, file_name="",
    )
    job.refresh_from_db()
    transaction.on_commit(lambda: _delete_file(old_file))
    _enqueue(job)
    return job


# --- the worker ------------------------------------------------------------------------------------


def export_claim(*, job_id, org_id, now=None):
    """PENDING → RUNNING (attempts + 1) in one conditional UPDATE; also takes over a RUNNING job whose
    heartbeat is stale (its worker died and the message was redelivered). None: nothing to do."""
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.EXPORT_HEARTBEAT_STALE_S)
    with rls.organization_context(org_id=org_id):
        claimable = Q(status=Status.PENDING) | Q(
            status=Status.RUNNING, heartbeat_at__lt=stale_before, attempts__lt=MAX_ATTEMPTS
        )
        claimed = (
            ExportJob.objects.filter(id=job_id)
            .filter(claimable)
            .update(
                status=Status.RUNNING, attempts=F("attempts") + 1, started_at=now, heartbeat_at=now, progress=0.0,
                error="", reading_count=0, annotation_count=0,
            )
        )
        if not claimed:
            return None
        return ExportJob.objects.get(id=job_id)


def _ours(job):
    return ExportJob.objects.filter(id=job.id, status=Status.RUNNING, attempts=job.attempts)


class Progress:
    """Heartbeat + progress in short transactions of their own; raises Stopped when the job is not ours."""

    def __init__(self, job, total):
        self.job = job
        self.total = max(total, 1)
        self.readings = 0
        self.annotations = 0

    def beat(self):
        done = self.readings + self.annotations
        with rls.organization_context(org_id=self.job.organization_id):
            updated = _ours(self.job).update(
                heartbeat_at=timezone.now(),
                progress=min(done / self.total, 0.99),
                reading_count=self.readings,
                annotation_count=self.annotations,
            )
        if not updated:
            raise Stopped()
        delay = float(getattr(settings, "EXPORT_TEST_DELAY_S", 0) or 0)  # tests only: a slow export
        if delay:
            time.sleep(delay)


def _after(keys, last):
    """Keyset condition `(keys…) > (last…)`: a row comparison PostgreSQL uses as an index bound."""
    return TupleGreaterThan(Tuple(*(F(key) for key in keys)), tuple(last))


def _group_members(job):
    """A device group export covers the group's members when the export runs (membership is exact)."""
    return device_selectors.group_member_ids(organization=job.organization, group_ids=[job.scope_id])


def _scope_readings(job):
    queryset = readings_queryset(organization=job.organization, ts_from=job.range_from, ts_to=job.range_to)
    if job.scope_type == ScopeType.DEVICE:
        queryset = queryset.filter(device_id=job.scope_id)
    elif job.scope_type == ScopeType.DEVICE_GROUP:
        queryset = queryset.filter(device_id__in=_group_members(job))
    return queryset


def _scope_annotations(job):
    queryset = annotations_overlapping(
        annotation_queryset(organization=job.organization), ts_from=job.range_from, ts_to=job.range_to
    )
    if job.scope_type == ScopeType.DEVICE:
        queryset = queryset.filter(device_id=job.scope_id)
    elif job.scope_type == ScopeType.DEVICE_GROUP:
        queryset = queryset.filter(device_id__in=_group_members(job))
    return queryset


# --- the members' rows: formatted by PostgreSQL (CSV) or in Python (JSON lines, SQLite) -------------


class _Iso(Func):
    """_iso() in SQL: UTC, microseconds only when there are some (as isoformat()), then `Z`. Whole
    seconds (most readings) take the plain text output, which to_char costs twice as much as (the
    chunk's transaction sets TimeZone UTC and DateStyle ISO: `2026-01-01 00:00:00+00`)."""

    template = (
        "CASE WHEN date_trunc('second', %(expressions)s) = %(expressions)s"
        " THEN replace(left(%(expressions)s::text, 19), ' ', 'T') || 'Z'"
        " ELSE replace(to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '.000000Z', 'Z')"
        " END"
    )
    output_field = TextField()


class _Text(Func):
    """COPY quotes an empty string ("") to tell it from NULL; csv.writer writes nothing: so make it NULL."""

    template = "NULLIF(%(expressions)s, '')"
    output_field = TextField()


FLOAT_MARK = ord("#")


class _Float(Func):
    """repr(float) in SQL, for a member's last column. Below 1e15 PostgreSQL prints the same shortest
    digits as Python, except that integral values lack Python's `.0`. From 1e15 on (rare) the two differ:
    PostgreSQL switches to exponent notation at 1e15, Python at 1e16, and past 2**54 PostgreSQL may
    choose a longer (equally exact) digit string; such a field gets a trailing `#` and Python prints
    it (_python_float). Only for a column: the expression is repeated."""

    template = (
        "CASE WHEN abs(%(expressions)s) >= 1e15::float8 THEN %(expressions)s::text || '#'"
        " WHEN %(expressions)s = trunc(%(expressions)s) THEN %(expressions)s::text || '.0'"
        " ELSE %(expressions)s::text END"
    )
    output_field = TextField()


def _python_float(row):
    """A CSV row whose last field _Float marked: PostgreSQL's exact text of the float, printed by repr()."""
    head, _, text = bytes(row[:-2]).rpartition(b",")
    return b"%s,%s\n" % (head, repr(float(text)).encode())


@dataclass(frozen=True)
class Rows:
    """What one member holds, and how to write it either way."""

    kind: str  # the member's name without extension, and its Progress counter
    header: list
    keys: tuple  # unique and btree-indexed: each keyset chunk is an index range scan, not a sort
    values: list  # Python: values_list(*keys, *values), then convert(row) gives the fields
    convert: Callable
    sql: list  # PostgreSQL: the same fields as SQL expressions that format them exactly as convert does
    sql_keys: tuple  # the keys read back from a CSV row of `sql`: (field index, parse) each


def _reading_row(row):
    device_uuid, metric, ts, device_id, value = row
    return [_iso(ts), str(device_uuid), device_id, metric, repr(float(value))]


def _annotation_row(row):
    ts_from, ann_id, device_uuid, device_id, class_name, ts_to, text, created_by, created_at = row
    return [str(ann_id), str(device_uuid), device_id, class_name, _iso(ts_from), _iso(ts_to), text, created_by, _iso(created_at)]


# Readings follow their unique (device, metric, ts) index: grouped by device and metric, in time order.
READINGS = Rows(
    kind="readings",
    header=READING_COLUMNS,
    keys=("device_id", "metric", "ts"),
    values=["device__device_id", "value"],
    convert=_reading_row,
    sql=[_Iso("ts"), "device_id", _Text("device__device_id"), _Text("metric"), _Float("value")],
    sql_keys=((1, uuid.UUID), (3, str), (0, datetime.fromisoformat)),
)
ANNOTATIONS = Rows(
    kind="annotations",
    header=ANNOTATION_COLUMNS,
    keys=("ts_from", "id"),
    values=["device_id", "device__device_id", "annotation_class__name", "ts_to", "text", "created_by", "created_at"],
    convert=_annotation_row,
    sql=["id", "device_id", _Text("device__device_id"), _Text("annotation_class__name"), _Iso("ts_from"),
         _Iso("ts_to"), _Text("text"), _Text("created_by"), _Iso("created_at")],
    sql_keys=((4, datetime.fromisoformat), (0, uuid.UUID)),
)


def _python_chunk(member, rows, chunk, limit):
    """One chunk read through a server-side cursor (EXPORT_FETCH_ROWS per fetch), each row formatted
    in Python. Returns (row count, keys of the last row)."""
    fetch_rows = getattr(settings, "EXPORT_FETCH_ROWS", 2_000)
    count, last = 0, None
    iterator = chunk.values_list(*rows.keys, *rows.values)[:limit].iterator(chunk_size=fetch_rows)
    try:
        for last in iterator:
            member.add(rows.convert(last))
            count += 1
    finally:
        iterator.close()  # on error: release the server-side cursor now, not at garbage collection
    return count, None if last is None else last[: len(rows.keys)]


def _copy_chunk(member, rows, chunk, limit):
    """One chunk as `COPY (SELECT …) TO STDOUT (FORMAT csv)`: PostgreSQL formats the rows, Python only
    hashes, deflates and stores the bytes. Row-level security applies as to any SELECT. Returns (row
    count, keys of the last row, read back from its CSV)."""
    sql, params = chunk.values_list(*rows.sql)[:limit].query.sql_with_params()
    marked = isinstance(rows.sql[-1], _Float)
    buffer, row, last = bytearray(), None, None
    connection.ensure_connection()
    # psycopg's own cursor: Django's debug wrapper takes no parameters for copy(), and psycopg merges
    # them into a COPY statement client-side.
    with connection.connection.cursor() as cursor:
        # The shortest exact float text (_Float relies on it; the default since PostgreSQL 12) and
        # timestamps as _Iso expects them.
        cursor.execute("SELECT set_config('extra_float_digits', '1', true), set_config('TimeZone', 'UTC', true),"
                       " set_config('DateStyle', 'ISO, MDY', true)")
        with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)", params) as copy:
            for row in copy:  # one CSV row per block
                if marked and row[-2] == FLOAT_MARK:
                    row = _python_float(row)
                buffer += row
                if len(buffer) >= archive.FLUSH_BYTES:
                    member.write(buffer)
                    buffer = bytearray()
            if row is not None:
                last = bytes(row)
        count = cursor.rowcount
    member.write(buffer, rows=count)
    if last is None:
        return count, None
    fields = next(csv.reader(io.StringIO(last.decode())))
    return count, tuple(parse(fields[index]) for index, parse in rows.sql_keys)


def _chunks(job, queryset, rows, write_chunk):
    """Write the rows in keyset chunks of EXPORT_CHUNK_ROWS ordered by `rows.keys`, each in its own
    short transaction; yields each chunk's row count between the transactions."""
    # Memory does not depend on the chunk size (rows are streamed); fewer, larger chunks restart
    # fewer scans (each chunk's merge join reads the devices index from its start again).
    chunk_rows = getattr(settings, "EXPORT_CHUNK_ROWS", 200_000)
    last = None
    while True:
        with rls.organization_context(org_id=job.organization_id):
            chunk = queryset if last is None else queryset.filter(_after(rows.keys, last))
            count, last = write_chunk(chunk.order_by(*rows.keys), chunk_rows)
        yield count
        if count < chunk_rows:
            return


def _write_member(zf, job, queryset, rows, progress):
    """Returns {member name: its rows, bytes and sha256}."""
    ext = "csv" if job.format == Format.CSV else "jsonl"
    name = f"{rows.kind}.{ext}"
    member = archive.Member(zf, name, rows.header, job.format)
    write_chunk = _copy_chunk if job.format == Format.CSV and rls.is_postgres() else _python_chunk
    for count in _chunks(job, queryset, rows, partial(write_chunk, member, rows)):
        setattr(progress, rows.kind, getattr(progress, rows.kind) + count)
        progress.beat()  # between chunks: heartbeat, progress, and the check for a cancellation
    return {name: member.close()}


def file_name_for(job):
    return f"exports/{job.organization_id}/{job.id}.zip"


def _open_for_write(name):
    try:
        path = default_storage.path(name)
    except NotImplementedError:  # object storage: no local path, a multipart upload
        pass
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    return default_storage.open(name, "wb")


def _abort(target):
    multipart = getattr(target, "_multipart", None)
    if multipart is not None:  # an unfinished S3 multipart upload: abort instead of completing it
        multipart.abort()
        target._multipart = None
        target._is_dirty = False
        target._raw_bytes_written = 1  # do not create an empty object on close
    target.close()


def _estimated_count(queryset):
    """Rows for the progress bar. PostgreSQL: the planner's estimate (no scan; counting 1,000,000
    readings up front cost a tenth of the export). Progress stays below 1.0 until the job is done,
    and the exact counts come from the rows written."""
    if not rls.is_postgres():
        return queryset.count()
    return int(json.loads(queryset.explain(format="json"))[0]["Plan"]["Plan Rows"])


def export_build(*, job):
    """Stream the job's rows into the zip in storage; returns (file name, size, member manifest)."""
    with rls.organization_context(org_id=job.organization_id):
        job = ExportJob.objects.select_related("organization").get(id=job.id)
        total = 0
        if Include.READINGS in job.includes:
            total += _estimated_count(_scope_readings(job))
        if Include.ANNOTATIONS in job.includes:
            total += _estimated_count(_scope_annotations(job))
    progress = Progress(job, total)
    name = file_name_for(job)
    target = _open_for_write(name)
    writer = archive.ForwardOnlyWriter(target)
    zf = None
    try:
        zf = archive.open_archive(writer)
        members = {}
        if Include.READINGS in job.includes:
            members.update(_write_member(zf, job, _scope_readings(job), READINGS, progress))
        if Include.ANNOTATIONS in job.includes:
            members.update(_write_member(zf, job, _scope_annotations(job), ANNOTATIONS, progress))
        manifest = {
            "export_id": str(job.id),
            "organization_id": str(job.organization_id),
            "scope_type": job.scope_type,
            "scope_id": str(job.scope_id) if job.scope_id else None,
            "from": _iso(job.range_from),
            "to": _iso(job.range_to),
            "format": job.format,
            "generated_at": _iso(timezone.now()),
            "reading_count": progress.readings,
            "annotation_count": progress.annotations,
            "members": members,
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=2))
        zf.close()
    except BaseException:
        # Not zf.close(): a half-written member cannot be finished; drop the upload or the file.
        writer.discard()
        if zf is not None:
            zf.fp = None  # nothing left for ZipFile.__del__ to write
        _abort(target)
        _delete_file(name)
        raise
    target.close()
    return name, writer.size, progress


def export_run(*, job_id, org_id):
    """The task body: idempotent (a job that is not PENDING, or a stale RUNNING one, is left alone)."""
    job = export_claim(job_id=job_id, org_id=org_id)
    if job is None:
        return "skipped"
    try:
        name, size, progress = export_build(job=job)
    except Stopped:
        return "stopped"
    except Exception as exc:
        logger.exception("export %s failed", job_id)
        with rls.organization_context(org_id=org_id):
            _ours(job).update(
                status=Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:1000], completed_at=timezone.now()
            )
        return "failed"
    now = timezone.now()
    with rls.organization_context(org_id=org_id):
        finished = _ours(job).update(
            status=Status.READY,
            progress=1.0,
            file_name=name,
            size_bytes=size,
            reading_count=progress.readings,
            annotation_count=progress.annotations,
            completed_at=now,
            expires_at=now + timedelta(seconds=settings.EXPORT_FILE_TTL_S),
            heartbeat_at=now,
        )
    if not finished:  # cancelled while the last bytes were written
        _delete_file(name)
        return "stopped"
    return "ready"


# --- beat: sweeper and expiry ----------------------------------------------------------------------


def exports_sweep(*, now=None):
    """Re-queue RUNNING jobs whose heartbeat is stale (their worker died) and PENDING jobs whose message
    was lost; give up with a clear error after MAX_ATTEMPTS. Returns (requeued, failed)."""
    now = now or timezone.now()
    stale_s = settings.EXPORT_HEARTBEAT_STALE_S
    stale_before = now - timedelta(seconds=stale_s)
    with rls.bypass(reason="exports sweep"):
        stale = ExportJob.objects.filter(status=Status.RUNNING, heartbeat_at__lt=stale_before)
        failed = stale.filter(attempts__gte=MAX_ATTEMPTS).update(
            status=Status.FAILED, error=STALE_ERROR.format(n=MAX_ATTEMPTS, s=stale_s), completed_at=now
        )
        lost = ExportJob.objects.filter(status=Status.PENDING).filter(
            Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True, created_at__lt=stale_before)
        )
        jobs = list(stale.filter(attempts__lt=MAX_ATTEMPTS).values_list("id", "organization_id")) + list(
            lost.values_list("id", "organization_id")
        )
        ExportJob.objects.filter(id__in=[job_id for job_id, _ in jobs]).update(status=Status.PENDING, heartbeat_at=now)
        from . import tasks

        for job_id, org_id in jobs:
            transaction.on_commit(lambda j=str(job_id), o=str(org_id): tasks.export_run.delay(j, o))
    return len(jobs), failed


def exports_expire(*, now=None):
    """READY jobs past expires_at: the file is deleted and the job becomes EXPIRED."""
    now = now or timezone.now()
    with rls.bypass(reason="exports expiry"):
        expired = list(
            ExportJob.objects.filter(status=Status.READY, expires_at__lt=now).values_list("id", "file_name")
        )
        ExportJob.objects.filter(id__in=[job_id for job_id, _ in expired], status=Status.READY).update(
            status=Status.EXPIRED, file_name=""
        )
    for _, name in expired:
        _delete_file(name)
    return len(expired)


# --- downloads -------------------------------------------------------------------------------------


def _signer(job):
    return signing.Signer(salt=f"exports.download:{job.organization_id}:{job.id}")


def _is_object_storage():
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # pragma: no cover
        return False
    return isinstance(default_storage, S3Storage)


def export_download_url(*, job, request=None, now=None):
    """A fresh time-limited URL for a READY job (None otherwise): presigned on S3, Django-signed locally."""
    if job.status != Status.READY or not job.file_name:
        return None
    ttl = settings.EXPORT_URL_TTL_S
    if _is_object_storage():
        return default_storage.url(job.file_name, expire=ttl)
    expires = int((now or timezone.now()).timestamp()) + ttl
    query = urlencode({"expires": expires, "signature": _signer(job).signature(str(expires))})
    path = f"{reverse('export-download', kwargs={'id': job.id})}?{query}"
    return request.build_absolute_uri(path) if request is not None else path


def export_for_download(*, job_id, expires, signature, now=None):
    """The READY job a signed URL names, or None (tampered, expired, unknown: indistinguishable)."""
    try:
        expires_at = int(expires)
    except (TypeError, ValueError):
        return None
    if not signature or expires_at < (now or timezone.now()).timestamp():
        return None
    with rls.bypass(reason="signed export download"):
        job = ExportJob.objects.filter(id=job_id, status=Status.READY).first()
    if job is None or not constant_time_compare(_signer(job).signature(str(expires_at)), signature):
        return None
    return job
