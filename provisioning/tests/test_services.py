"""Services and selectors called directly (under the organization's RLS context)."""

from datetime import timedelta

import pytest
from cryptography import x509
from django.utils import timezone

from devices.models import Device, DeviceStatus
from devices.tests.factories import DeviceFactory
from fleet.activity.services import SYSTEM
from fleet.errors import Conflict, Unauthorized
from provisioning import pki, selectors, services
from provisioning.models import DeviceCertificate, DeviceEnrollment, OrganizationCA
from provisioning.tests.factories import DeviceEnrollmentFactory
from provisioning.tests.test_api import ec_csr


@pytest.fixture
def in_org(org, org_context):
    return org_context(org)


def test_root_is_generated_once_into_the_configured_files(in_org, pki_files, settings):
    assert not pki_files.exists()
    root = services.root_ca()
    assert (pki_files / "root-ca.pem").exists() and (pki_files / "root-ca.key.pem").exists()
    assert oct((pki_files / "root-ca.key.pem").stat().st_mode & 0o777) == "0o600"
    services._root_cache.clear()
    assert services.root_ca().certificate == root.certificate  # loaded, not regenerated
    # A wrong passphrase cannot read the key.
    services._root_cache.clear()
    settings.PKI_KEY_PASSPHRASE = "wrong"
    with pytest.raises(ValueError):
        services.root_ca()


def test_configured_production_root_is_used(in_org, tmp_path, settings):
    root = pki.generate_root_ca(common_name="Production Root")
    cert_file, key_file = tmp_path / "prod" / "root.pem", tmp_path / "prod" / "root.key"
    cert_file.parent.mkdir()
    cert_file.write_text(root.certificate_pem())
    key_file.write_bytes(root.encrypted_key_pem(passphrase=b"prod secret"))
    settings.PKI_ROOT_CERT_FILE, settings.PKI_ROOT_KEY_FILE = cert_file, key_file
    settings.PKI_KEY_PASSPHRASE = "prod secret"
    ca_row = services.organization_ca_get_or_create(organization=in_org)
    intermediate = x509.load_pem_x509_certificate(ca_row.certificate_pem.encode())
    assert intermediate.issuer == root.certificate.subject
    intermediate.verify_directly_issued_by(root.certificate)


def test_organization_ca_is_created_once(in_org):
    first = services.organization_ca_get_or_create(organization=in_org)
    second = services.organization_ca_get_or_create(organization=in_org)
    assert first.pk == second.pk and OrganizationCA.objects.count() == 1
    cert = x509.load_pem_x509_certificate(first.certificate_pem.encode())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    crl = x509.load_pem_x509_crl(first.crl_pem.encode())
    assert crl.is_signature_valid(cert.public_key()) and len(list(crl)) == 0


def test_token_create_rolls_back_on_conflict(in_org):
    DeviceFactory(organization=in_org, device_id="taken")
    with pytest.raises(Conflict):
        services.registration_token_create(organization=in_org, actor=SYSTEM, device_name="x", device_id="taken")
    assert Device.objects.count() == 1 and DeviceEnrollment.objects.count() == 0


def test_provision_service_and_exactly_once(in_org):
    token, secret = services.registration_token_create(organization=in_org, actor=SYSTEM, device_name="gw")
    result = services.device_provision(secret=secret, csr_pem=ec_csr())
    assert result.device.status == DeviceStatus.ACTIVE and result.api_key.startswith("dk_")
    with pytest.raises(Conflict):
        services.device_provision(secret=secret, csr_pem=ec_csr())
    with pytest.raises(Unauthorized):
        # Change the last character (a fixed "x" was the same secret whenever the secret ended in "x").
        services.device_provision(secret=secret[:-1] + ("y" if secret.endswith("x") else "x"), csr_pem=ec_csr())


def test_provision_refuses_a_revoked_device(in_org):
    from devices import services as device_services

    token, secret = services.registration_token_create(organization=in_org, actor=SYSTEM, device_name="gw")
    device_services.device_revoke(device=token.device, actor=SYSTEM)
    with pytest.raises(Conflict):
        services.device_provision(secret=secret, csr_pem=ec_csr())
    token.refresh_from_db()
    assert token.used_at is None and DeviceCertificate.objects.count() == 0


def test_certificates_revoke_for_device_updates_the_crl(in_org):
    token, secret = services.registration_token_create(organization=in_org, actor=SYSTEM, device_name="gw")
    first = services.device_provision(secret=secret, csr_pem=ec_csr()).certificate
    second = services.certificate_renew(device=first.device, actor=SYSTEM, csr_pem=ec_csr()).certificate
    bystander = services.device_provision(
        secret=services.registration_token_create(organization=in_org, actor=SYSTEM, device_name="b")[1],
        csr_pem=ec_csr(),
    ).certificate
    at = timezone.now() - timedelta(minutes=1)
    assert services.certificates_revoke_for_device(device=first.device, at=at) == 2
    ca_row = OrganizationCA.objects.get()
    crl = x509.load_pem_x509_crl(ca_row.crl_pem.encode())
    revoked = {format(entry.serial_number, "x"): entry.revocation_date_utc for entry in crl}
    assert set(revoked) == {first.serial.lstrip("0"), second.serial.lstrip("0")}
    assert all(abs(d - at) < timedelta(seconds=1) for d in revoked.values())
    assert bystander.serial.lstrip("0") not in revoked
    assert ca_row.crl_number == 2
    ca_cert = x509.load_pem_x509_certificate(ca_row.certificate_pem.encode())
    assert crl.is_signature_valid(ca_cert.public_key())


def test_revoke_without_a_ca_does_nothing(in_org):
    assert services.certificates_revoke_for_device(device=DeviceFactory(organization=in_org)) == 0


def test_enrollment_error_count(in_org, other_org):
    DeviceEnrollmentFactory(organization=in_org, status="error")
    DeviceEnrollmentFactory(organization=in_org, status="error")
    DeviceEnrollmentFactory(organization=in_org, status="success")
    DeviceEnrollmentFactory(organization=other_org, status="error")
    assert selectors.enrollment_error_count(organization=in_org) == 2


def test_error_logs_are_capped(in_org):
    token, secret = services.registration_token_create(organization=in_org, actor=SYSTEM, device_name="gw")
    services.enrollment_report_errors(secret=secret, logs=[f"line {i}" for i in range(services.ERROR_LOGS_MAX)])
    enrollment = services.enrollment_report_errors(secret=secret, logs=["newest"])
    assert len(enrollment.error_logs) == services.ERROR_LOGS_MAX
    assert enrollment.error_logs[0] == "line 1" and enrollment.error_logs[-1] == "newest"


def test_plaintext_ca_keys_are_refused(in_org):
    from cryptography.hazmat.primitives import serialization

    authority = pki.generate_root_ca(common_name="x")
    plaintext = authority.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(ValueError, match="encrypted"):
        OrganizationCA.objects.create(
            organization=in_org, certificate_pem=authority.certificate_pem(), encrypted_key_pem=plaintext
        )
    assert OrganizationCA.objects.count() == 0
