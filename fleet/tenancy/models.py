import uuid

from django.conf import settings
from django.db import models


class Organization(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug


def organization_key(*, db_index=True):
    """The `org_id` column. A model whose composite indexes all lead with it passes db_index=False
    (one index fewer to write per row, on the tables written most)."""
    return models.ForeignKey(
        Organization, on_delete=models.CASCADE, db_column="org_id", related_name="+", db_index=db_index
    )


class OrgScopedModel(models.Model):
    """Base of every organization-scoped table: a non-null `org_id` guarded by an RLS policy."""

    organization = organization_key()

    class Meta:
        abstract = True


class Role(models.TextChoices):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    OWNER = "owner"

    @classmethod
    def rank(cls, role):
        return [cls.VIEWER, cls.OPERATOR, cls.ADMIN, cls.OWNER].index(role)

    @classmethod
    def at_least(cls, role, required):
        return cls.rank(role) >= cls.rank(required)


class Membership(OrgScopedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="membership_unique_user")]

    def __str__(self):
        return f"{self.user} @ {self.organization_id} ({self.role})"


class ApiKey(OrgScopedModel):
    PREFIX = "sk_live_"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ADMIN)
    prefix = models.CharField(max_length=32, editable=False)
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self, now):
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
