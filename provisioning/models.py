"""Registration tokens, the per-organization CA, device certificates and enrollments."""

import uuid

from django.conf import settings
from django.db import models

from devices.models import Device, EndUser
from fleet.tenancy.models import OrgScopedModel


ENCRYPTED_KEY_PEM_HEADER = "-----BEGIN ENCRYPTED PRIVATE KEY-----"


class TokenStatus(models.TextChoices):
    PENDING = "pending"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"


class EnrollmentStatus(models.TextChoices):
    SUCCESS = "success"
    ERROR = "error"
    PENDING = "pending"


class RegistrationToken(OrgScopedModel):
    """A one-time secret (`rt_…`) a device exchanges for its certificate; stored hashed, shown once."""

    PREFIX = "rt_"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="registration_tokens")
    device_name = models.CharField(max_length=255)
    labels = models.JSONField(default=dict, blank=True)
    prefix = models.CharField(max_length=32, editable=False)
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_label = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="regtoken_org_created")]

    def __str__(self):
        return f"{self.prefix}… ({self.device_name})"

    def status_at(self, now):
        if self.revoked_at is not None:
            return TokenStatus.REVOKED
        if self.used_at is not None:
            return TokenStatus.USED
        if self.expires_at <= now:
            return TokenStatus.EXPIRED
        return TokenStatus.PENDING


class OrganizationCA(OrgScopedModel):
    """The organization's intermediate CA (signed by the platform root) and its current CRL.

    The private key is stored only as passphrase-encrypted PKCS#8 PEM (settings.PKI_KEY_PASSPHRASE).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    certificate_pem = models.TextField()
    encrypted_key_pem = models.TextField(editable=False)
    crl_number = models.PositiveBigIntegerField(default=0)
    crl_pem = models.TextField(blank=True, default="")
    crl_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "organization CA"
        constraints = [models.UniqueConstraint(fields=["organization"], name="organizationca_unique_org")]

    def __str__(self):
        return f"CA of {self.organization_id}"

    def save(self, *args, **kwargs):
        # Never plaintext at rest: only passphrase-encrypted PKCS#8 is accepted.
        if not self.encrypted_key_pem.lstrip().startswith(ENCRYPTED_KEY_PEM_HEADER):
            raise ValueError("OrganizationCA.encrypted_key_pem must be an encrypted PKCS#8 PEM key.")
        super().save(*args, **kwargs)


class DeviceCertificate(OrgScopedModel):
    """An X.509 client certificate issued to a device (mutual TLS with the broker)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="certificates")
    serial = models.CharField(max_length=64, unique=True, help_text="Serial number, lowercase hex.")
    fingerprint_sha256 = models.CharField(max_length=64, unique=True)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    certificate_pem = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [
            models.Index(fields=["device", "-created_at"], name="devicecert_device_created"),
            models.Index(fields=["organization", "revoked_at"], name="devicecert_org_revoked"),
        ]

    def __str__(self):
        return self.serial


class DeviceEnrollment(OrgScopedModel):
    """One enrollment of a device through a registration token (seed 002's "device deployment")."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="enrollments")
    status = models.CharField(max_length=16, choices=EnrollmentStatus.choices, default=EnrollmentStatus.PENDING)
    enrollment_date = models.DateTimeField(null=True, blank=True)
    enrollment_token = models.OneToOneField(
        RegistrationToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="enrollment"
    )
    user = models.ForeignKey(EndUser, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error_logs = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [
            models.Index(fields=["device", "-created_at"], name="enrollment_device_created"),
            models.Index(fields=["organization", "status"], name="enrollment_org_status"),
        ]

    def __str__(self):
        return f"{self.device_id} {self.status}"
