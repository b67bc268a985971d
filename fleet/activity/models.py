import uuid

from django.db import models

from fleet.tenancy.models import OrgScopedModel, organization_key


class ActorType(models.TextChoices):
    USER = "user"
    API_KEY = "api_key"
    DEVICE = "device"
    APP_KEY = "app_key"
    PUBLISHABLE_KEY = "publishable_key"
    SYSTEM = "system"


class ActivityEvent(OrgScopedModel):
    """One line of an organization's feed. Subjects are plain ids so history outlives deletions."""

    organization = organization_key(db_index=False)  # every index below leads with it
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    verb = models.CharField(max_length=64)
    subject_type = models.CharField(max_length=64)
    subject_id = models.CharField(max_length=64)
    app_ref = models.UUIDField(null=True, blank=True)
    device_ref = models.UUIDField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="activity_org_time"),
            models.Index(fields=["organization", "device_ref", "-created_at"], name="activity_device_time"),
            models.Index(fields=["organization", "app_ref", "-created_at"], name="activity_app_time"),
            models.Index(fields=["organization", "subject_type", "subject_id"], name="activity_subject"),
        ]

    def __str__(self):
        return f"{self.actor_type}:{self.actor_label} {self.verb} {self.subject_type}:{self.subject_id}"
