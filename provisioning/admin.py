"""Operator console: registration tokens (revoke action), certificates, enrollments and CAs, read-only.

Tokens are created through the API (the secret is shown once there); the revoke action calls the service.
Private keys never appear here: the CA admin shows the certificate and the CRL only.
"""

from django.contrib import admin, messages
from django.utils import timezone

from fleet.activity.models import ActorType
from fleet.activity.services import Actor
from fleet.tenancy.admin_site import OrgScopedAdmin

from . import services
from .models import DeviceCertificate, DeviceEnrollment, OrganizationCA, RegistrationToken


def admin_actor(request):
    return Actor(type=ActorType.USER, id=str(request.user.pk), label=request.user.get_username())


class ReadOnlyAdmin(OrgScopedAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RegistrationToken)
class RegistrationTokenAdmin(ReadOnlyAdmin):
    list_display = [
        "prefix", "device_name", "organization", "status", "expires_at", "used_at", "revoked_at", "created_at"
    ]
    list_filter = ["organization"]
    search_fields = ["device_name", "prefix"]
    exclude = ["secret_hash"]
    actions = ["revoke"]

    @admin.display(description="status")
    def status(self, obj):
        return obj.status_at(timezone.now())

    @admin.action(description="Revoke the selected registration tokens")
    def revoke(self, request, queryset):
        for token in queryset.select_related("organization"):
            services.registration_token_revoke(token=token, actor=admin_actor(request))
        self.message_user(request, f"Revoked {queryset.count()} token(s).", messages.SUCCESS)

    def has_change_permission(self, request, obj=None):
        return obj is None and request.user.is_staff  # the changelist action only


@admin.register(DeviceCertificate)
class DeviceCertificateAdmin(ReadOnlyAdmin):
    list_display = ["serial", "device", "organization", "not_before", "not_after", "revoked_at"]
    list_filter = ["organization"]
    search_fields = ["serial", "fingerprint_sha256"]
    list_select_related = ["device", "organization"]


@admin.register(DeviceEnrollment)
class DeviceEnrollmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "device", "organization", "status", "enrollment_date", "updated_at"]
    list_filter = ["status", "organization"]
    list_select_related = ["device", "organization"]


@admin.register(OrganizationCA)
class OrganizationCAAdmin(ReadOnlyAdmin):
    list_display = ["organization", "crl_number", "crl_updated_at", "created_at"]
    exclude = ["encrypted_key_pem"]
