"""Readings (a time series per device and metric), quarantined readings, annotations."""

import uuid

from django.db import models
from django.db.models import F, Q

from fleet.tenancy.models import OrgScopedModel

METRIC_MAX = 64


class Reading(OrgScopedModel):
    """One value of one metric of one device at one instant.

    (device, metric, ts) is unique: a replayed reading is ignored, the first write wins. The
    unique index doubles as the (device, metric, ts) lookup index, and on PostgreSQL it INCLUDEs
    org_id and value (migration 0004) so exports read it alone; PostgreSQL also gets a BRIN index on
    ts (migration 0002) for organization-wide time ranges.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by the unique (device, metric, ts) below: no index of its own to write per reading.
    device = models.ForeignKey("devices.Device", on_delete=models.CASCADE, related_name="+", db_index=False)
    metric = models.CharField(max_length=METRIC_MAX)
    ts = models.DateTimeField()
    value = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "metric", "ts"], name="reading_unique_device_metric_ts")]

    def __str__(self):
        return f"{self.metric}={self.value} @ {self.ts:%Y-%m-%dT%H:%M:%S}"


class QuarantinedReading(OrgScopedModel):
    """An ingested item that failed validation: kept verbatim with the reason, never dropped."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey("devices.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    raw = models.JSONField(null=True, blank=True)
    reason = models.CharField(max_length=500)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-received_at", "id"]
        verbose_name = "quarantined reading"
        indexes = [models.Index(fields=["organization", "-received_at"], name="quarantine_org_received")]

    def __str__(self):
        return f"{self.reason} ({self.received_at:%Y-%m-%d %H:%M})"


class AnnotationClass(OrgScopedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    color = models.CharField(max_length=7, default="#888888")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "annotation class"
        verbose_name_plural = "annotation classes"
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="annotationclass_unique_name")]

    def __str__(self):
        return self.name


class Annotation(OrgScopedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey("devices.Device", on_delete=models.CASCADE, related_name="+")
    annotation_class = models.ForeignKey(AnnotationClass, on_delete=models.PROTECT, related_name="annotations")
    ts_from = models.DateTimeField()
    ts_to = models.DateTimeField(null=True, blank=True)
    text = models.TextField(blank=True, default="")
    created_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-ts_from", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ts_to__isnull=True) | Q(ts_to__gte=F("ts_from")), name="annotation_ts_to_after_from"
            ),
        ]
        indexes = [
            models.Index(fields=["device", "ts_from"], name="annotation_device_ts"),
            models.Index(fields=["organization", "ts_from"], name="annotation_org_ts"),
        ]

    def __str__(self):
        return f"{self.annotation_class_id} on {self.device_id} @ {self.ts_from:%Y-%m-%d %H:%M}"
