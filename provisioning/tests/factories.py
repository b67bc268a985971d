"""Factories for provisioning models, and the isolation walker's path parameters."""

import functools
from datetime import timedelta

import factory
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.utils import timezone

from devices.tests.factories import DeviceFactory
from fleet.tenancy import credentials
from fleet.tenancy.tests.factories import OrgScopedFactory
from provisioning import pki
from provisioning.models import DeviceCertificate, DeviceEnrollment, OrganizationCA, RegistrationToken


def same_org_device():
    return factory.SubFactory(DeviceFactory, organization=factory.SelfAttribute("..organization"))


@functools.cache
def _test_ca():
    root = pki.generate_root_ca(common_name="Factory Root")
    return pki.generate_intermediate_ca(parent=root, common_name="Factory CA", organization="factory")


def make_csr(key=None, *, common_name="ignored"):
    key = key or ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode("ascii")
    )


class RegistrationTokenFactory(OrgScopedFactory):
    """A pending token; the secret is kept on `.secret` for the test."""

    class Meta:
        model = RegistrationToken

    device = same_org_device()
    device_name = factory.LazyAttribute(lambda o: o.device.name or o.device.device_id)
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=1))

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        secret = credentials.generate(prefix=RegistrationToken.PREFIX)
        kwargs.setdefault("prefix", credentials.display_prefix(secret=secret, prefix=RegistrationToken.PREFIX))
        kwargs.setdefault("secret_hash", credentials.hash_secret(secret))
        token = super()._create(model_class, *args, **kwargs)
        token.secret = secret
        return token


class OrganizationCAFactory(OrgScopedFactory):
    """A standalone CA (not under the configured root): enough for listings and isolation."""

    class Meta:
        model = OrganizationCA
        django_get_or_create = ("organization",)

    certificate_pem = factory.LazyFunction(lambda: _test_ca().certificate_pem())
    encrypted_key_pem = factory.LazyFunction(lambda: _test_ca().encrypted_key_pem(passphrase=b"factory").decode())
    crl_number = 1


class DeviceCertificateFactory(OrgScopedFactory):
    class Meta:
        model = DeviceCertificate
        exclude = ["cert"]

    device = same_org_device()
    cert = factory.LazyAttribute(
        lambda o: pki.issue_client_certificate(
            ca=_test_ca(), csr=x509.load_pem_x509_csr(make_csr().encode()), device_uuid=str(o.device.id),
            organization_id=str(o.organization.id),
        )
    )
    serial = factory.LazyAttribute(lambda o: pki.serial_hex(certificate=o.cert))
    fingerprint_sha256 = factory.LazyAttribute(lambda o: pki.fingerprint_sha256(certificate=o.cert))
    not_before = factory.LazyAttribute(lambda o: o.cert.not_valid_before_utc)
    not_after = factory.LazyAttribute(lambda o: o.cert.not_valid_after_utc)
    certificate_pem = factory.LazyAttribute(lambda o: o.cert.public_bytes(serialization.Encoding.PEM).decode())


class DeviceEnrollmentFactory(OrgScopedFactory):
    class Meta:
        model = DeviceEnrollment

    device = same_org_device()
    status = "success"
    enrollment_date = factory.LazyFunction(timezone.now)


# Path kwarg -> callable(organization=...) for the foundation's cross-organization route walk.
# `org_id` (GET /provisioning/crl/<org_id>.pem) is deliberately absent: the CRL is public by design.
ISOLATION_PATH_PARAMS = {"device": lambda organization: DeviceFactory(organization=organization)}
