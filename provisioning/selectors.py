"""Reads for provisioning. Keyword-only, organization first."""

from django.db.models import Q
from django.utils import timezone

from .models import DeviceCertificate, DeviceEnrollment, EnrollmentStatus, RegistrationToken, TokenStatus


def registration_token_queryset(*, organization, status=None, now=None):
    queryset = RegistrationToken.objects.filter(organization=organization)
    if status:
        queryset = queryset.filter(registration_token_status_q(status=status, now=now or timezone.now()))
    return queryset.order_by("-created_at", "id")


def registration_token_status_q(*, status, now):
    """The filter matching RegistrationToken.status_at(now) == status."""
    live = Q(revoked_at__isnull=True)
    unused = live & Q(used_at__isnull=True)
    return {
        TokenStatus.REVOKED: Q(revoked_at__isnull=False),
        TokenStatus.USED: live & Q(used_at__isnull=False),
        TokenStatus.EXPIRED: unused & Q(expires_at__lte=now),
        TokenStatus.PENDING: unused & Q(expires_at__gt=now),
    }[status]


def device_certificates(*, organization, device):
    return DeviceCertificate.objects.filter(organization=organization, device=device).order_by("-created_at", "id")


def device_enrollments(*, organization, device):
    return DeviceEnrollment.objects.filter(organization=organization, device=device).order_by("-created_at", "id")


def enrollment_error_count(*, organization):
    """Enrollments in status error, for the devices summary."""
    return DeviceEnrollment.objects.filter(organization=organization, status=EnrollmentStatus.ERROR).count()
