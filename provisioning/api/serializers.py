"""Input and output serializers for the provisioning API (plain Serializers; `Meta.model` informs the schema)."""

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from devices.api.serializers import LabelsField, StrictCharField

from .. import pki, services
from ..models import DeviceCertificate, DeviceEnrollment, EnrollmentStatus, RegistrationToken, TokenStatus

LOG_ENTRY_MAX_CHARS = 2000
LOG_ENTRIES_MAX = 100
CSR_HELP = "PEM-encoded PKCS#10 certificate signing request."


# --- registration tokens ---------------------------------------------------------------------------
class RegistrationTokenCreateSerializer(serializers.Serializer):
    device_name = StrictCharField(max_length=255)
    device_id = StrictCharField(
        max_length=255, required=False, help_text="The device's identifier (unique in the organization); "
        "defaults to the new device's UUID."
    )
    labels = LabelsField(required=False)
    expires_in_s = serializers.IntegerField(
        required=False,
        min_value=services.TOKEN_MIN_TTL_S,
        max_value=services.TOKEN_MAX_TTL_S,
        help_text=f"Lifetime in seconds (default {services.TOKEN_DEFAULT_TTL_S}, at most 30 days).",
    )


class RegistrationTokenCreatedSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The token's id (to revoke it).")
    token = serializers.CharField(help_text="The one-time secret (`rt_…`): shown once, never again.")
    device_id = serializers.UUIDField(help_text="UUID of the device, created in status pending.")
    device_name = serializers.CharField()
    provision_endpoint = serializers.URLField()
    expires_at = serializers.DateTimeField()


class RegistrationTokenSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    prefix = serializers.CharField(help_text="The secret's first characters, to recognise it.")
    device_id = serializers.UUIDField(help_text="UUID of the device the token enrolls.")
    device_name = serializers.CharField()
    labels = serializers.DictField(child=serializers.CharField())
    status = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField()
    used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    created_by = serializers.CharField(source="created_by_label")
    created_at = serializers.DateTimeField()

    class Meta:
        model = RegistrationToken

    @extend_schema_field(serializers.ChoiceField(choices=TokenStatus.choices))
    def get_status(self, token):
        now = self.context.get("now") or timezone.now()
        return token.status_at(now)


# --- provisioning ----------------------------------------------------------------------------------
class ProvisionSerializer(serializers.Serializer):
    token = StrictCharField(max_length=128, help_text="The registration token (`rt_…`).")
    csr = StrictCharField(
        max_length=pki.MAX_CSR_BYTES, trim_whitespace=False, help_text=CSR_HELP
    )


class MqttSerializer(serializers.Serializer):
    host = serializers.CharField()
    port = serializers.IntegerField()
    client_id = serializers.CharField()
    topic_prefix = serializers.CharField()


class ProvisionedSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    certificate = serializers.CharField(help_text="The client certificate (PEM).")
    ca_chain = serializers.CharField(help_text="Organization CA then platform root (PEM).")
    serial = serializers.CharField(help_text="Serial number, lowercase hex.")
    certificate_expires_at = serializers.DateTimeField()
    api_key = serializers.CharField(help_text="Device token (`dk_…`) for the HTTP endpoints: shown once.")
    mqtt = MqttSerializer()


class ProvisionErrorsSerializer(serializers.Serializer):
    token = StrictCharField(max_length=128, help_text="The registration token (`rt_…`); it is not consumed.")
    logs = serializers.ListField(
        child=StrictCharField(max_length=LOG_ENTRY_MAX_CHARS),
        min_length=1,
        max_length=LOG_ENTRIES_MAX,
        help_text="Log lines, oldest first (e.g. `2026-01-30T14:30:15Z: Installation failed`).",
    )


# --- certificates ----------------------------------------------------------------------------------
class DeviceCertificateSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    serial = serializers.CharField()
    fingerprint_sha256 = serializers.CharField()
    not_before = serializers.DateTimeField()
    not_after = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    class Meta:
        model = DeviceCertificate


class CertificateRenewSerializer(serializers.Serializer):
    csr = StrictCharField(
        max_length=pki.MAX_CSR_BYTES, trim_whitespace=False, help_text=CSR_HELP
    )


class CertificateIssuedSerializer(DeviceCertificateSerializer):
    certificate = serializers.CharField(source="certificate_pem", help_text="The client certificate (PEM).")
    ca_chain = serializers.CharField(help_text="Organization CA then platform root (PEM).")


# --- enrollments (seed 002's DeviceDeploymentRef / DeviceDeployment) -----------------------------
class DeviceEnrollmentRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=EnrollmentStatus.choices)
    enrollment_date = serializers.DateTimeField(allow_null=True)

    class Meta:
        model = DeviceEnrollment


class DeviceEnrollmentSerializer(DeviceEnrollmentRefSerializer):
    enrollment_token_id = serializers.UUIDField(allow_null=True)
    user_id = serializers.UUIDField(allow_null=True)
    error_logs = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
