"""Writes and domain actions for provisioning. Keyword-only arguments; each runs inside transaction.atomic.

Registration tokens (`rt_…`) are one-time secrets: a device exchanges one, with a PKCS#10 CSR, for an
X.509 client certificate issued by its organization's intermediate CA (under the platform root) and a
device token (`dk_…`, issued by the devices app). The token is consumed by one conditional UPDATE,
so concurrent attempts yield exactly one certificate.
"""

import fcntl
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from devices import services as device_services
from devices.models import Device, DeviceStatus
from fleet.activity import services as activity
from fleet.activity.models import ActorType
from fleet.activity.services import Actor
from fleet.api.authentication import INVALID_CREDENTIALS
from fleet.errors import Conflict, Invalid, Unauthorized
from fleet.tenancy import credentials
from fleet.tenancy.services import credential_find

from . import pki
from .models import (
    DeviceCertificate,
    DeviceEnrollment,
    EnrollmentStatus,
    OrganizationCA,
    RegistrationToken,
    TokenStatus,
)

TOKEN_DEFAULT_TTL_S = 86400
TOKEN_MIN_TTL_S = 60
TOKEN_MAX_TTL_S = 30 * 86400
TOKEN_EXPIRED = "token expired"
TOKEN_USED = "This registration token has already been used."
# Path segments of provisioning routes under /devices/: a device_id equal to one would be shadowed.
ERROR_LOGS_MAX = 500  # entries kept per enrollment (the oldest are dropped)
ROOT_COMMON_NAME = "Fleet Device Root CA"
# The cached CRL is re-signed when older than this (its nextUpdate is CRL_NEXT_UPDATE_S after signing).
CRL_NEXT_UPDATE_S = 86400
CRL_REFRESH_AFTER = timedelta(hours=12)

_root_lock = threading.Lock()
_root_cache = {}


class CSRRejectedError(Invalid):
    """The CSR was refused (400, field "csr"); the registration token stays usable."""

    def __init__(self, message):
        super().__init__(message, field="csr")


@dataclass(frozen=True)
class IssuedCertificate:
    device: Device
    certificate: DeviceCertificate
    ca_chain_pem: str
    api_key: str | None = None


# --- the platform root and organization CAs -----------------------------------------------------
def _passphrase():
    return settings.PKI_KEY_PASSPHRASE.encode()


def root_ca():
    """The platform root CA: loaded from the configured files, generated there on first use (dev).

    Cached per process (keyed by the settings). Generation happens under a thread lock and an
    exclusive file lock next to the files, so two workers starting together cannot write two roots.
    """
    cert_path, key_path = Path(settings.PKI_ROOT_CERT_FILE), Path(settings.PKI_ROOT_KEY_FILE)
    key = (str(cert_path), str(key_path), settings.PKI_KEY_PASSPHRASE)
    with _root_lock:
        root = _root_cache.get(key)
        if root is None:
            root = _load_or_create_root(cert_path=cert_path, key_path=key_path)
            _root_cache.clear()
            _root_cache[key] = root
    return root


def _load_or_create_root(*, cert_path, key_path):
    arguments = {
        "cert_path": cert_path,
        "key_path": key_path,
        "passphrase": _passphrase(),
        "common_name": ROOT_COMMON_NAME,
    }
    if cert_path.exists() and key_path.exists():  # production: configured files, only read
        return pki.load_or_create_root(**arguments)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    with open(cert_path.parent / ".root-ca.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        return pki.load_or_create_root(**arguments)


def _authority(ca_row):
    return pki.ca_from_pem(
        certificate_pem=ca_row.certificate_pem.encode("ascii"),
        key_pem=ca_row.encrypted_key_pem.encode("ascii"),
        passphrase=_passphrase(),
    )


@transaction.atomic
def organization_ca_get_or_create(*, organization, now=None):
    """The organization's intermediate CA row, created (with an empty CRL) on first use.

    A unique constraint on the organization makes concurrent first uses converge on one CA: the
    second insert waits for the first, fails, and reads the winner's row.
    """
    ca_row = OrganizationCA.objects.filter(organization=organization).first()
    if ca_row is not None:
        return ca_row
    now = now or timezone.now()
    intermediate = pki.generate_intermediate_ca(
        parent=root_ca(), common_name=f"Fleet devices {organization.slug}", organization=str(organization.id)
    )
    crl = pki.build_crl(ca=intermediate, revoked=[], crl_number=1, now=now, next_update_s=CRL_NEXT_UPDATE_S)
    try:
        with transaction.atomic():
            return OrganizationCA.objects.create(
                organization=organization,
                certificate_pem=intermediate.certificate_pem(),
                encrypted_key_pem=intermediate.encrypted_key_pem(passphrase=_passphrase()).decode("ascii"),
                crl_number=1,
                crl_pem=pki.crl_pem(crl),
                crl_updated_at=now,
            )
    except IntegrityError:
        return OrganizationCA.objects.get(organization=organization)


def _ca_chain_pem(ca_row):
    return ca_row.certificate_pem + root_ca().certificate_pem()


def _crl_regenerate(*, ca_row, now):
    """Re-sign the CRL with every revoked, unexpired certificate of the organization (row locked by caller)."""
    revoked = (
        DeviceCertificate.objects.filter(
            organization_id=ca_row.organization_id, revoked_at__isnull=False, not_after__gt=now
        )
        .order_by("revoked_at", "serial")
        .values_list("serial", "revoked_at")
    )
    ca_row.crl_number += 1
    crl = pki.build_crl(
        ca=_authority(ca_row),
        revoked=[(int(serial, 16), revoked_at) for serial, revoked_at in revoked],
        crl_number=ca_row.crl_number,
        now=now,
        next_update_s=CRL_NEXT_UPDATE_S,
    )
    ca_row.crl_pem = pki.crl_pem(crl)
    ca_row.crl_updated_at = now
    ca_row.save(update_fields=["crl_number", "crl_pem", "crl_updated_at"])
    return ca_row


@transaction.atomic
def crl_current(*, organization_id, now=None):
    """The organization's current CRL (PEM), re-signed when it is getting old; None without a CA.

    Runs under the caller's organization context (the CRL endpoint has no principal).
    """
    now = now or timezone.now()
    ca_row = OrganizationCA.objects.filter(organization_id=organization_id).first()
    if ca_row is None:
        return None
    if ca_row.crl_updated_at is None or now - ca_row.crl_updated_at >= CRL_REFRESH_AFTER:
        ca_row = OrganizationCA.objects.select_for_update().get(pk=ca_row.pk)
        if ca_row.crl_updated_at is None or now - ca_row.crl_updated_at >= CRL_REFRESH_AFTER:
            _crl_regenerate(ca_row=ca_row, now=now)
    return ca_row.crl_pem


# --- certificates --------------------------------------------------------------------------------
def _certificate_issue(*, device, organization, csr, now):
    ca_row = organization_ca_get_or_create(organization=organization, now=now)
    cert = pki.issue_client_certificate(
        ca=_authority(ca_row),
        csr=csr,
        device_uuid=str(device.id),
        organization_id=str(organization.id),
        valid_days=settings.CERTIFICATE_VALIDITY_DAYS,
        now=now,
    )
    record = DeviceCertificate.objects.create(
        organization=organization,
        device=device,
        serial=pki.serial_hex(certificate=cert),
        fingerprint_sha256=pki.fingerprint_sha256(certificate=cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    )
    return record, _ca_chain_pem(ca_row)


def _validated_csr(csr_pem):
    try:
        return pki.validate_csr(csr_pem=csr_pem)
    except pki.CSRRejected as exc:
        raise CSRRejectedError(str(exc)) from None


@transaction.atomic
def certificate_renew(*, device, actor, csr_pem, now=None):
    """Issue a new certificate for the device's new CSR; earlier certificates stay valid until expiry."""
    now = now or timezone.now()
    if device.status == DeviceStatus.REVOKED:
        raise Conflict("This device has been revoked.")
    csr = _validated_csr(csr_pem)
    record, chain = _certificate_issue(device=device, organization=device.organization, csr=csr, now=now)
    activity.record(
        organization=device.organization,
        actor=actor,
        verb="device.certificate_renewed",
        subject_type="device",
        subject_id=device.id,
        device_id=device.id,
        data={"device_id": device.device_id, "serial": record.serial},
    )
    return IssuedCertificate(device=device, certificate=record, ca_chain_pem=chain)


@transaction.atomic
def certificates_revoke_for_device(*, device, at=None):
    """Revoke the device's live certificates and re-sign the organization's CRL; returns how many.

    Called by the device revoke flow, in its transaction. Locks the CA row first (one CRL number
    at a time), then the certificates.
    """
    at = at or timezone.now()
    ca_row = OrganizationCA.objects.select_for_update().filter(organization_id=device.organization_id).first()
    count = DeviceCertificate.objects.filter(device=device, revoked_at__isnull=True).update(revoked_at=at)
    if count and ca_row is not None:
        _crl_regenerate(ca_row=ca_row, now=max(at, timezone.now()))
    return count


# --- registration tokens ---------------------------------------------------------------------------
@transaction.atomic
def registration_token_create(
    *, organization, actor, device_name, device_id=None, labels=None, expires_in_s=None, created_by=None, now=None
):
    """Create a device in status pending, its one-time registration token and a pending enrollment.

    Returns (token, secret); the secret is never stored and never shown again.
    """
    now = now or timezone.now()
    ttl = TOKEN_DEFAULT_TTL_S if expires_in_s is None else expires_in_s
    if not TOKEN_MIN_TTL_S <= ttl <= TOKEN_MAX_TTL_S:
        raise Invalid(f"Must be between {TOKEN_MIN_TTL_S} and {TOKEN_MAX_TTL_S} seconds.", field="expires_in_s")
    pk = uuid.uuid4()
    if device_id is None:
        device_id = str(pk)
    device = device_services.device_create_pending(
        organization=organization, actor=actor, device_id=device_id, name=device_name, labels=labels, id=pk
    )
    secret = credentials.generate(prefix=RegistrationToken.PREFIX)
    token = RegistrationToken.objects.create(
        organization=organization,
        device=device,
        device_name=device_name,
        labels=labels or {},
        prefix=credentials.display_prefix(secret=secret, prefix=RegistrationToken.PREFIX),
        secret_hash=credentials.hash_secret(secret),
        expires_at=now + timedelta(seconds=ttl),
        created_by=created_by,
        created_by_label=(actor.label or "")[:200],
    )
    DeviceEnrollment.objects.create(
        organization=organization, device=device, status=EnrollmentStatus.PENDING, enrollment_token=token
    )
    activity.record(
        organization=organization,
        actor=actor,
        verb="device.registration_token_created",
        subject_type="registration_token",
        subject_id=token.id,
        device_id=device.id,
        data={"device_id": device.device_id, "expires_at": token.expires_at.isoformat()},
    )
    return token, secret


@transaction.atomic
def registration_token_revoke(*, token, actor, now=None):
    """Revoke a token (idempotent); an unused token can then no longer provision."""
    if token.revoked_at is None:
        token.revoked_at = now or timezone.now()
        token.save(update_fields=["revoked_at"])
        activity.record(
            organization=token.organization,
            actor=actor,
            verb="device.registration_token_revoked",
            subject_type="registration_token",
            subject_id=token.id,
            device_id=token.device_id,
            data={"was_used": token.used_at is not None},
        )
    return token


def _token_for_secret(*, secret):
    """The RegistrationToken for `secret` (device and organization loaded), organization made current.

    Malformed secrets are refused before any query; unknown ones get the same 401.
    """
    token = credential_find(
        queryset=RegistrationToken.objects.select_related("device", "organization"),
        secret=secret,
        prefix=RegistrationToken.PREFIX,
    )
    if token is None:
        raise Unauthorized(INVALID_CREDENTIALS)
    token.device.organization = token.organization
    return token


def _raise_unusable(*, token, now):
    status = token.status_at(now)
    if status == TokenStatus.REVOKED:
        raise Unauthorized(INVALID_CREDENTIALS)
    if status == TokenStatus.EXPIRED:
        raise Unauthorized(TOKEN_EXPIRED)
    if status == TokenStatus.USED:
        raise Conflict(TOKEN_USED)
    if token.device.status == DeviceStatus.REVOKED:
        raise Conflict("This device has been revoked.")


def _token_actor(token):
    return Actor(type=ActorType.DEVICE, id=str(token.device_id), label=token.device.device_id)


def _enrollment_for_token(*, token):
    enrollment = DeviceEnrollment.objects.select_for_update().filter(enrollment_token=token).first()
    if enrollment is None:  # e.g. removed by an operator: start a new record
        enrollment = DeviceEnrollment.objects.create(
            organization_id=token.organization_id, device_id=token.device_id, enrollment_token=token
        )
    return enrollment


def _stamp(now):
    return now.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _append_errors(*, enrollment, logs, now):
    enrollment.error_logs = [*(enrollment.error_logs or []), *logs][-ERROR_LOGS_MAX:]
    enrollment.status = EnrollmentStatus.ERROR
    enrollment.enrollment_date = now
    enrollment.save(update_fields=["error_logs", "status", "enrollment_date", "updated_at"])


def device_provision(*, secret, csr_pem, now=None):
    """Exchange a registration token and a CSR for a certificate and a device token, exactly once.

    Order: authenticate the token (401/409 if unusable), validate the CSR (a rejection is recorded
    in the enrollment's error_logs and raised as CSRRejectedError after that write is kept; the token
    stays usable), then consume the token with one conditional UPDATE: of concurrent requests only
    one matches the row; the others re-read it and get 409.
    """
    now = now or timezone.now()
    with transaction.atomic():
        token = _token_for_secret(secret=secret)
        _raise_unusable(token=token, now=now)
        try:
            csr = pki.validate_csr(csr_pem=csr_pem)
        except pki.CSRRejected as exc:
            reason = str(exc)
            _append_errors(
                enrollment=_enrollment_for_token(token=token), logs=[f"{_stamp(now)}: CSR rejected: {reason}"], now=now
            )
        else:
            return _provision(token=token, csr=csr, now=now)
    raise CSRRejectedError(reason)  # outside the block: the error log above is kept


def _provision(*, token, csr, now):
    with transaction.atomic():
        consumed = RegistrationToken.objects.filter(
            pk=token.pk, used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
        ).update(used_at=now)
        if not consumed:
            token.refresh_from_db(fields=["used_at", "revoked_at", "expires_at"])
            _raise_unusable(token=token, now=now)
            raise Conflict(TOKEN_USED)
        token.used_at = now
        organization = token.organization
        actor = _token_actor(token)
        device = token.device
        api_key = device_services.device_token_issue(device=device, actor=actor)
        if device.status != DeviceStatus.ACTIVE:
            device = device_services.device_update(device=device, actor=actor, status=DeviceStatus.ACTIVE)
        record, chain = _certificate_issue(device=device, organization=organization, csr=csr, now=now)
        enrollment = _enrollment_for_token(token=token)
        enrollment.status = EnrollmentStatus.SUCCESS
        enrollment.enrollment_date = now
        enrollment.save(update_fields=["status", "enrollment_date", "updated_at"])
        activity.record(
            organization=organization,
            actor=actor,
            verb="device.provisioned",
            subject_type="device",
            subject_id=device.id,
            device_id=device.id,
            data={"device_id": device.device_id, "serial": record.serial, "enrollment_id": str(enrollment.id)},
        )
        return IssuedCertificate(device=device, certificate=record, ca_chain_pem=chain, api_key=api_key)


def enrollment_report_errors(*, secret, logs, now=None):
    """An agent reports installation failures with its registration token (not consumed).

    Used tokens are accepted (the failure may follow provisioning); revoked -> 401, expired -> 401.
    """
    now = now or timezone.now()
    with transaction.atomic():
        token = _token_for_secret(secret=secret)
        if token.revoked_at is not None:
            raise Unauthorized(INVALID_CREDENTIALS)
        if token.expires_at <= now:
            raise Unauthorized(TOKEN_EXPIRED)
        enrollment = _enrollment_for_token(token=token)
        _append_errors(enrollment=enrollment, logs=list(logs), now=now)
        activity.record(
            organization=token.organization,
            actor=_token_actor(token),
            verb="device.enrollment_failed",
            subject_type="device",
            subject_id=token.device_id,
            device_id=token.device_id,
            data={"device_id": token.device.device_id, "enrollment_id": str(enrollment.id), "entries": len(logs)},
        )
        return enrollment
