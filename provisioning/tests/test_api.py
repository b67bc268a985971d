"""The provisioning API end to end: tokens, provision, CSR rules, certificates, renewal, CRL, enrollments."""

import uuid
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.utils import timezone

from devices.models import Device, DeviceStatus
from devices.tests.factories import DeviceFactory, registered_device
from fleet.activity.models import ActivityEvent
from fleet.tenancy import credentials, rls
from provisioning import pki, services
from provisioning.models import DeviceCertificate, DeviceEnrollment, OrganizationCA, RegistrationToken
from provisioning.tests.factories import DeviceCertificateFactory, DeviceEnrollmentFactory, RegistrationTokenFactory
from provisioning.tests.test_pki import csr_pem, der_to_pem, make_csr, sha1_signed_csr_pem

TOKENS = "/api/v1/devices/registration/tokens"
PROVISION = "/api/v1/devices/provision"


def ec_csr(curve=ec.SECP256R1, **kwargs):
    return csr_pem(make_csr(ec.generate_private_key(curve()), extras=False, **kwargs)).decode()


def create_token(client, **body):
    response = client.post(TOKENS, {"device_name": "warehouse-gateway-01", **body}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def provision(anonymous, token, csr=None):
    return anonymous.post(PROVISION, {"token": token, "csr": csr or ec_csr()}, format="json")


def bypassed(fn):
    with rls.bypass(reason="test"):
        return fn()


# --- registration tokens ---------------------------------------------------------------------------


def test_create_token_creates_a_pending_device_and_enrollment(client_a, org):
    body = create_token(client_a, labels={"site": "berlin"}, expires_in_s=3600)
    assert set(body) == {"id", "token", "device_id", "device_name", "provision_endpoint", "expires_at"}
    assert body["token"].startswith("rt_")
    assert body["provision_endpoint"] == "http://testserver/api/v1/devices/provision"
    device = bypassed(lambda: Device.objects.get(pk=body["device_id"]))
    assert device.status == DeviceStatus.PENDING and device.organization_id == org.id
    assert device.name == "warehouse-gateway-01" and device.labels == {"site": "berlin"}
    assert device.device_id == body["device_id"]  # no device_id given: the UUID
    token = bypassed(lambda: RegistrationToken.objects.get(pk=body["id"]))
    assert token.secret_hash != body["token"] and body["token"] not in str(token.__dict__)
    assert abs((token.expires_at - timezone.now()) - timedelta(hours=1)) < timedelta(seconds=30)
    enrollment = bypassed(lambda: DeviceEnrollment.objects.get(enrollment_token=token))
    assert enrollment.status == "pending" and enrollment.device_id == device.id


def test_create_token_validation(client_a, org):
    assert client_a.post(TOKENS, {}, format="json").json()["fields"].keys() == {"device_name"}
    for body, field in (
        ({"device_name": "x", "expires_in_s": 31 * 86400}, "expires_in_s"),
        ({"device_name": "x", "expires_in_s": 0}, "expires_in_s"),
        ({"device_name": "x", "labels": {"bad key!": "v"}}, "labels.bad key!"),
        ({"device_name": "x", "device_id": "provision"}, "device_id"),
        ({"device_name": 12}, "device_name"),
    ):
        response = client_a.post(TOKENS, body, format="json")
        assert response.status_code == 400, body
        assert any(key.startswith(field.split(".")[0]) for key in response.json()["fields"]), response.json()
    create_token(client_a, device_id="gw-1")
    response = client_a.post(TOKENS, {"device_name": "again", "device_id": "gw-1"}, format="json")
    assert response.status_code == 409 and "device_id" in response.json()["fields"]


def test_viewer_cannot_create_tokens(make_client, org):
    assert make_client(org, role="viewer").post(TOKENS, {"device_name": "x"}, format="json").status_code == 403


def test_list_tokens_with_status_and_never_the_secret(client_a, org, anonymous, django_assert_max_num_queries):
    pending = create_token(client_a)
    used = create_token(client_a)
    assert provision(anonymous, used["token"]).status_code == 201
    revoked = create_token(client_a)
    assert client_a.delete(f"{TOKENS}/{revoked['id']}").status_code == 204
    expired = RegistrationTokenFactory(organization=org, expires_at=timezone.now() - timedelta(seconds=1))

    body = client_a.get(TOKENS).json()
    assert body["total"] == 4 and body["limit"] == 100 and body["offset"] == 0
    statuses = {row["id"]: row["status"] for row in body["registration_tokens"]}
    assert statuses == {
        pending["id"]: "pending", used["id"]: "used", revoked["id"]: "revoked", str(expired.id): "expired"
    }
    text = str(body)
    assert all(secret not in text for secret in (pending["token"], used["token"], revoked["token"]))
    row = next(r for r in body["registration_tokens"] if r["id"] == pending["id"])
    assert row["prefix"] == pending["token"][:11] and row["device_id"] == pending["device_id"]
    for status in ("pending", "used", "revoked", "expired"):
        rows = client_a.get(f"{TOKENS}?status={status}").json()["registration_tokens"]
        assert [r["status"] for r in rows] == [status]
    assert client_a.get(f"{TOKENS}?status=bogus").status_code == 400

    for _ in range(10):
        RegistrationTokenFactory(organization=org)
    with django_assert_max_num_queries(8):
        assert len(client_a.get(f"{TOKENS}?limit=3").json()["registration_tokens"]) == 3
    with django_assert_max_num_queries(8):
        assert len(client_a.get(f"{TOKENS}?limit=14").json()["registration_tokens"]) == 14


def test_revoke_token_is_idempotent_and_other_orgs_get_404(client_a, client_b, org, anonymous):
    token = create_token(client_a)
    assert client_b.delete(f"{TOKENS}/{token['id']}").status_code == 404
    assert client_a.delete(f"{TOKENS}/{token['id']}").status_code == 204
    assert client_a.delete(f"{TOKENS}/{token['id']}").status_code == 204
    assert client_a.delete(f"{TOKENS}/not-a-uuid").status_code == 404
    response = provision(anonymous, token["token"])
    assert response.status_code == 401


# --- provision -------------------------------------------------------------------------------------


def test_provision_round_trip(client_a, org, anonymous, bearer, pki_files):
    token = create_token(client_a, device_id="gw-7")
    key = ec.generate_private_key(ec.SECP256R1())
    response = provision(anonymous, token["token"], csr_pem(make_csr(key, extras=False)).decode())
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == {"device_id", "certificate", "ca_chain", "serial", "certificate_expires_at", "api_key", "mqtt"}
    assert body["device_id"] == token["device_id"]
    assert body["api_key"].startswith("dk_")
    assert body["mqtt"] == {
        "host": "localhost",
        "port": 8883,
        "client_id": token["device_id"],
        "topic_prefix": f"fleet/{org.id}/{token['device_id']}",
    }
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert cert.public_key() == key.public_key()
    assert pki.serial_hex(certificate=cert) == body["serial"]
    chain = x509.load_pem_x509_certificates(body["ca_chain"].encode())
    assert len(chain) == 2
    pki.verify_chain(certificate=cert, intermediate=chain[0], root=chain[1])
    # The root is the configured (here: generated, per-test) platform root.
    assert chain[1] == x509.load_pem_x509_certificate((pki_files / "root-ca.pem").read_bytes())
    assert b"ENCRYPTED PRIVATE KEY" in (pki_files / "root-ca.key.pem").read_bytes()

    device = bypassed(lambda: Device.objects.get(pk=token["device_id"]))
    assert device.status == DeviceStatus.ACTIVE
    record = bypassed(lambda: DeviceCertificate.objects.get(device=device))
    assert record.serial == body["serial"] and record.fingerprint_sha256 == pki.fingerprint_sha256(certificate=cert)
    enrollment = bypassed(lambda: DeviceEnrollment.objects.get(device=device))
    assert enrollment.status == "success" and enrollment.enrollment_date is not None
    assert bypassed(lambda: ActivityEvent.objects.filter(verb="device.provisioned", device_ref=device.id).count()) == 1

    # The api_key is a working device token for the HTTP endpoints.
    device_client = bearer(body["api_key"])
    listed = device_client.get(f"/api/v1/devices/{device.id}/certificates")
    assert listed.status_code == 200 and listed.json()["certificates"][0]["serial"] == body["serial"]
    # Exactly once.
    again = provision(anonymous, token["token"])
    assert again.status_code == 409 and again.json()["error"] == "conflict"


def test_organization_ca_key_is_encrypted_at_rest(client_a, org, anonymous):
    token = create_token(client_a)
    assert provision(anonymous, token["token"]).status_code == 201
    ca_row = bypassed(lambda: OrganizationCA.objects.get(organization=org))
    assert "ENCRYPTED PRIVATE KEY" in ca_row.encrypted_key_pem
    assert "BEGIN PRIVATE KEY" not in ca_row.encrypted_key_pem and "EC PRIVATE KEY" not in ca_row.encrypted_key_pem
    with pytest.raises((TypeError, ValueError)):
        serialization.load_pem_private_key(ca_row.encrypted_key_pem.encode(), password=None)


def test_certificate_contents(client_a, org, anonymous, settings):
    settings.CERTIFICATE_VALIDITY_DAYS = 90
    token = create_token(client_a)
    body = provision(anonymous, token["token"]).json()
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == token["device_id"]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == str(org.id)
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=90) <= validity <= timedelta(days=90, minutes=6)
    assert body["certificate_expires_at"].replace("Z", "+00:00") == cert.not_valid_after_utc.isoformat()


def test_csr_asking_for_ca_and_foreign_sans_is_accepted_but_ignored(client_a, anonymous):
    token = create_token(client_a)
    key = ec.generate_private_key(ec.SECP384R1())
    response = provision(anonymous, token["token"], csr_pem(make_csr(key, common_name="root-of-all")).decode())
    assert response.status_code == 201, response.json()
    cert = x509.load_pem_x509_certificate(response.json()["certificate"].encode())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == []
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [f"urn:uuid:{token['device_id']}"]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == token["device_id"]


def _tampered_csr():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = bytearray(make_csr(key).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return der_to_pem(bytes(der)).decode()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(
            lambda: csr_pem(make_csr(rsa.generate_private_key(public_exponent=65537, key_size=1024))).decode(),
            "RSA key must be at least 2048 bits",
            id="rsa-1024",
        ),
        pytest.param(lambda: ec_csr(ec.SECP192R1), "EC curve must be P-256 or P-384", id="p-192"),
        pytest.param(_tampered_csr, "CSR signature does not verify", id="bad-signature"),
        pytest.param(
            lambda: sha1_signed_csr_pem().decode(), "signature algorithm must be SHA-256 or stronger", id="sha1"
        ),
        pytest.param(lambda: "not a csr", "not a PEM-encoded PKCS#10 CSR", id="garbage"),
    ],
)
def test_csr_rejections_are_400_with_the_reason_and_keep_the_token(client_a, org, anonymous, make, reason):
    token = create_token(client_a)
    response = provision(anonymous, token["token"], make())
    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "message": reason, "fields": {"csr": [reason]}}
    # Recorded on the enrollment (the write survives the 400).
    enrollments = client_a.get(f"/api/v1/devices/{token['device_id']}/enrollments").json()["enrollments"]
    assert [e["status"] for e in enrollments] == ["error"]
    detail = client_a.get(f"/api/v1/devices/{token['device_id']}/enrollments/{enrollments[0]['id']}").json()
    assert len(detail["error_logs"]) == 1 and detail["error_logs"][0].endswith(f"CSR rejected: {reason}")
    assert detail["enrollment_token_id"] == token["id"]
    # The token stays usable: a good CSR then succeeds, and the enrollment becomes a success.
    assert provision(anonymous, token["token"]).status_code == 201
    detail = client_a.get(f"/api/v1/devices/{token['device_id']}/enrollments/{enrollments[0]['id']}").json()
    assert detail["status"] == "success" and len(detail["error_logs"]) == 1


def test_strong_keys_are_accepted(client_a, anonymous):
    for csr in (
        csr_pem(make_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), extras=False)).decode(),
        ec_csr(ec.SECP384R1),
    ):
        assert provision(anonymous, create_token(client_a)["token"], csr).status_code == 201


def test_bad_tokens(client_a, org, anonymous):
    unknown = credentials.generate(prefix="rt_")
    for secret in (unknown, "rt_short", "sk_live_whatever", unknown[:-1] + ("A" if unknown[-1] != "A" else "B")):
        response = provision(anonymous, secret)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized", secret

    expired = RegistrationTokenFactory(organization=org, expires_at=timezone.now() - timedelta(seconds=1))
    response = provision(anonymous, expired.secret)
    assert response.status_code == 401 and response.json()["message"] == "token expired"

    revoked = RegistrationTokenFactory(organization=org, revoked_at=timezone.now())
    response = provision(anonymous, revoked.secret)
    assert response.status_code == 401 and response.json()["message"] != "token expired"

    used = RegistrationTokenFactory(organization=org, used_at=timezone.now())
    assert provision(anonymous, used.secret).status_code == 409

    # An expired token with a bad CSR is still "token expired" (the token is checked first).
    response = provision(anonymous, expired.secret, "not a csr")
    assert response.status_code == 401 and response.json()["message"] == "token expired"
    assert anonymous.post(PROVISION, {"token": unknown}, format="json").json()["fields"].keys() == {"csr"}


def test_provision_ignores_other_credentials(client_a, anonymous):
    # The endpoint authenticates by the body only: an API key header does not matter.
    token = create_token(client_a)
    response = client_a.post(PROVISION, {"token": token["token"], "csr": ec_csr()}, format="json")
    assert response.status_code == 201


# --- provision errors (agent reports) --------------------------------------------------------------


def test_agent_reports_installation_errors(client_a, anonymous):
    token = create_token(client_a)
    logs = ["2026-01-30T14:30:05Z: Downloading agent package...", "2026-01-30T14:30:15Z: Installation failed"]
    response = anonymous.post(f"{PROVISION}/errors", {"token": token["token"], "logs": logs}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "error" and response.json()["error_logs"] == logs
    # Not consumed: the device can still provision.
    assert provision(anonymous, token["token"]).status_code == 201
    more = anonymous.post(f"{PROVISION}/errors", {"token": token["token"], "logs": ["late failure"]}, format="json")
    assert more.status_code == 200 and more.json()["error_logs"] == [*logs, "late failure"]

    empty = anonymous.post(f"{PROVISION}/errors", {"token": token["token"], "logs": []}, format="json")
    assert empty.status_code == 400
    bad = anonymous.post(f"{PROVISION}/errors", {"token": token["token"], "logs": "x"}, format="json")
    assert bad.status_code == 400 and "logs" in bad.json()["fields"]
    assert anonymous.post(f"{PROVISION}/errors", {"token": "rt_x", "logs": ["x"]}, format="json").status_code == 401


def test_error_reports_with_revoked_or_expired_tokens_are_401(org, anonymous):
    revoked = RegistrationTokenFactory(organization=org, revoked_at=timezone.now())
    expired = RegistrationTokenFactory(organization=org, expires_at=timezone.now() - timedelta(seconds=1))
    response = anonymous.post(f"{PROVISION}/errors", {"token": revoked.secret, "logs": ["x"]}, format="json")
    assert response.status_code == 401
    response = anonymous.post(f"{PROVISION}/errors", {"token": expired.secret, "logs": ["x"]}, format="json")
    assert response.status_code == 401 and response.json()["message"] == "token expired"


# --- certificates and renewal ----------------------------------------------------------------------


def test_renew_with_the_device_token(client_a, org, anonymous, bearer):
    token = create_token(client_a)
    first = provision(anonymous, token["token"]).json()
    device_client = bearer(first["api_key"])
    url = f"/api/v1/devices/{token['device_id']}/certificates/renew"
    key = ec.generate_private_key(ec.SECP256R1())
    response = device_client.post(url, {"csr": csr_pem(make_csr(key, extras=False)).decode()}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["serial"] != first["serial"] and body["revoked_at"] is None
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert cert.public_key() == key.public_key()
    chain = x509.load_pem_x509_certificates(body["ca_chain"].encode())
    pki.verify_chain(certificate=cert, intermediate=chain[0], root=chain[1])
    # Both stay valid; the list shows both, newest first.
    listed = client_a.get(f"/api/v1/devices/{token['device_id']}/certificates").json()
    assert [c["serial"] for c in listed["certificates"]] == [body["serial"], first["serial"]]
    assert all(c["revoked_at"] is None for c in listed["certificates"])
    # Bad CSR: 400 naming csr. An API key (even of the same org) cannot renew: 403.
    bad = device_client.post(url, {"csr": ec_csr(ec.SECP192R1)}, format="json")
    assert bad.status_code == 400 and "csr" in bad.json()["fields"]
    assert client_a.post(url, {"csr": ec_csr()}, format="json").status_code == 403
    # Another device's token cannot address this device.
    other = registered_device(org)
    assert bearer(other.secret).post(url, {"csr": ec_csr()}, format="json").status_code == 404


def test_certificate_list_query_count(client_a, org, django_assert_max_num_queries):
    device = DeviceFactory(organization=org)
    for _ in range(12):
        DeviceCertificateFactory(organization=org, device=device)
    url = f"/api/v1/devices/{device.id}/certificates"
    with django_assert_max_num_queries(8):
        assert len(client_a.get(f"{url}?limit=2").json()["certificates"]) == 2
    with django_assert_max_num_queries(8):
        assert len(client_a.get(f"{url}?limit=12").json()["certificates"]) == 12
    assert client_a.get(f"/api/v1/devices/{device.device_id}/certificates").json()["total"] == 12


# --- revocation and the CRL ------------------------------------------------------------------------


def test_revocation_appears_in_the_crl(client_a, org, anonymous):
    token = create_token(client_a)
    body = provision(anonymous, token["token"]).json()
    url = f"/api/v1/provisioning/crl/{org.id}.pem"
    response = anonymous.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/pkix-crl"
    crl = x509.load_pem_x509_crl(response.content)
    chain = x509.load_pem_x509_certificates(body["ca_chain"].encode())
    assert crl.is_signature_valid(chain[0].public_key())
    assert crl.get_revoked_certificate_by_serial_number(int(body["serial"], 16)) is None
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    device = bypassed(lambda: Device.objects.get(pk=token["device_id"]))
    with rls.organization_context(org_id=org.id):
        assert services.certificates_revoke_for_device(device=device) == 1
        assert services.certificates_revoke_for_device(device=device) == 0  # idempotent

    crl = x509.load_pem_x509_crl(anonymous.get(url).content)
    assert crl.is_signature_valid(chain[0].public_key())
    entry = crl.get_revoked_certificate_by_serial_number(int(body["serial"], 16))
    assert entry is not None
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > number
    listed = client_a.get(f"/api/v1/devices/{device.id}/certificates").json()["certificates"]
    assert listed[0]["revoked_at"] is not None


def test_crl_404s(anonymous, org):
    assert anonymous.get(f"/api/v1/provisioning/crl/{uuid.uuid4()}.pem").status_code == 404
    assert anonymous.get(f"/api/v1/provisioning/crl/{org.id}.pem").status_code == 404  # no CA yet
    response = anonymous.get("/api/v1/provisioning/crl/not-a-uuid.pem")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_crl_is_re_signed_when_old(client_a, org, anonymous):
    provision(anonymous, create_token(client_a)["token"])
    old = timezone.now() - timedelta(hours=13)
    bypassed(lambda: OrganizationCA.objects.filter(organization=org).update(crl_updated_at=old))
    crl = x509.load_pem_x509_crl(anonymous.get(f"/api/v1/provisioning/crl/{org.id}.pem").content)
    assert crl.next_update_utc > timezone.now() + timedelta(hours=23)
    assert bypassed(lambda: OrganizationCA.objects.get(organization=org).crl_number) == 2


# --- enrollments -----------------------------------------------------------------------------------


def test_enrollment_list_and_detail_shapes(client_a, org, django_assert_max_num_queries):
    device = DeviceFactory(organization=org)
    enrollment = DeviceEnrollmentFactory(organization=org, device=device, status="error", error_logs=["a", "b"])
    for _ in range(10):
        DeviceEnrollmentFactory(organization=org, device=device)
    url = f"/api/v1/devices/{device.id}/enrollments"
    body = client_a.get(url).json()
    assert body["total"] == 11
    assert set(body["enrollments"][0]) == {"id", "status", "enrollment_date"}
    detail = client_a.get(f"{url}/{enrollment.id}").json()
    assert set(detail) == {
        "id", "status", "enrollment_date", "enrollment_token_id", "user_id", "error_logs", "created_at", "updated_at"
    }
    assert detail["error_logs"] == ["a", "b"] and detail["status"] == "error"
    assert client_a.get(f"{url}/{uuid.uuid4()}").status_code == 404
    assert client_a.get(f"{url}/nope").status_code == 404
    with django_assert_max_num_queries(8):
        assert len(client_a.get(f"{url}?limit=2").json()["enrollments"]) == 2
    with django_assert_max_num_queries(8):
        assert len(client_a.get(f"{url}?limit=11").json()["enrollments"]) == 11


# --- isolation -------------------------------------------------------------------------------------


def test_other_organizations_see_nothing(client_a, client_b, org, anonymous, bearer):
    token = create_token(client_a)
    body = provision(anonymous, token["token"]).json()
    device = token["device_id"]
    enrollment_id = client_a.get(f"/api/v1/devices/{device}/enrollments").json()["enrollments"][0]["id"]

    assert client_b.get(TOKENS).json()["registration_tokens"] == []
    assert client_b.delete(f"{TOKENS}/{token['id']}").status_code == 404
    assert client_b.get(f"/api/v1/devices/{device}/certificates").status_code == 404
    renew = client_b.post(f"/api/v1/devices/{device}/certificates/renew", {"csr": ec_csr()}, format="json")
    assert renew.status_code == 404
    assert client_b.get(f"/api/v1/devices/{device}/enrollments").status_code == 404
    assert client_b.get(f"/api/v1/devices/{device}/enrollments/{enrollment_id}").status_code == 404
    # A device of organization B (its own device token) cannot reach A's device either.
    other = bearer(registered_device(client_b.api_key.organization).secret)
    assert other.get(f"/api/v1/devices/{device}/certificates").status_code == 404
    # A's rows are invisible under B's row-level security context (PostgreSQL).
    if not rls.is_postgres():
        return
    with rls.organization_context(org_id=client_b.api_key.organization_id):
        assert not DeviceCertificate.objects.filter(serial=body["serial"]).exists()
        assert not RegistrationToken.objects.filter(pk=token["id"]).exists()
        assert not DeviceEnrollment.objects.filter(pk=enrollment_id).exists()


def test_revoking_the_device_revokes_its_certificates_and_lists_them_in_the_crl(client_a, org, anonymous):
    token = create_token(client_a, device_id="gw-revoked")
    serial = provision(anonymous, token["token"]).json()["serial"]
    revoked = client_a.post(f"/api/v1/devices/{token['device_id']}/revoke", format="json")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    certificate = bypassed(lambda: DeviceCertificate.objects.get(serial=serial))
    assert certificate.revoked_at is not None
    crl = x509.load_pem_x509_crl(anonymous.get(f"/api/v1/provisioning/crl/{org.id}.pem").content)
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


def test_device_summary_counts_enrollment_errors(client_a, anonymous):
    token = create_token(client_a)
    provision(anonymous, token["token"], "not a csr")
    assert client_a.get("/api/v1/devices/summary").json()["enrollment_errors"] == 1
