"""Export jobs: a zip of readings and annotations for a scope and a time range, built by a worker."""

import uuid

from django.db import models

from fleet.tenancy.models import OrgScopedModel


class ScopeType(models.TextChoices):
    DEVICE = "DEVICE"
    DEVICE_GROUP = "DEVICE_GROUP"
    ORGANIZATION = "ORGANIZATION"


class Include(models.TextChoices):
    READINGS = "READINGS"
    ANNOTATIONS = "ANNOTATIONS"


class Format(models.TextChoices):
    CSV = "csv"
    JSONL = "jsonl"


class Status(models.TextChoices):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    READY = "READY"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


ACTIVE = (Status.PENDING, Status.RUNNING)


class ExportJob(OrgScopedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    scope_type = models.CharField(max_length=16, choices=ScopeType.choices)
    scope_id = models.UUIDField(null=True, blank=True)
    range_from = models.DateTimeField()
    range_to = models.DateTimeField()
    includes = models.JSONField(default=list)
    format = models.CharField(max_length=8, choices=Format.choices, default=Format.CSV)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    progress = models.FloatField(default=0.0)
    requested_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    reading_count = models.BigIntegerField(default=0)
    annotation_count = models.BigIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    file_name = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "id"]
        verbose_name = "export job"
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="exportjob_org_created"),
            models.Index(fields=["status", "heartbeat_at"], name="exportjob_status_heartbeat"),
            models.Index(fields=["status", "expires_at"], name="exportjob_status_expires"),
        ]

    def __str__(self):
        return f"{self.scope_type} export {self.id} ({self.status})"
