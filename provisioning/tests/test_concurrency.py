"""Exactly once under real concurrency: threads against PostgreSQL, each with its own connection."""

import threading
from collections import Counter

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from django.db import connections
from django.test import Client

from devices.models import DeviceToken
from fleet.activity.services import SYSTEM
from fleet.tenancy import rls
from provisioning import services
from provisioning.models import DeviceCertificate, DeviceEnrollment, OrganizationCA, RegistrationToken
from provisioning.tests.test_api import ec_csr

THREADS = 50


def _race(target, n):
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def run(i):
        try:
            barrier.wait(timeout=30)
            results[i] = target(i)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_provisions_with_one_token_yield_one_certificate(org):
    with rls.organization_context(org_id=org.id):
        token, secret = services.registration_token_create(organization=org, actor=SYSTEM, device_name="gw")
    csrs = [ec_csr() for _ in range(THREADS)]

    def attempt(i):
        response = Client().post(
            "/api/v1/devices/provision", {"token": secret, "csr": csrs[i]}, content_type="application/json"
        )
        return response.status_code, response.json()

    results = _race(attempt, THREADS)
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 409: THREADS - 1}, statuses
    winner = next(body for status, body in results if status == 201)
    assert all(body["error"] == "conflict" for status, body in results if status == 409)

    with rls.bypass(reason="test"):
        certificates = list(DeviceCertificate.objects.filter(organization=org))
        assert [c.serial for c in certificates] == [winner["serial"]]
        assert RegistrationToken.objects.get(pk=token.pk).used_at is not None
        assert DeviceToken.objects.filter(device_id=token.device_id, revoked_at__isnull=True).count() == 1
        assert DeviceEnrollment.objects.get(enrollment_token=token).status == "success"
        assert OrganizationCA.objects.filter(organization=org).count() == 1
    cert = x509.load_pem_x509_certificate(winner["certificate"].encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == str(token.device_id)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_provisions_share_one_organization_ca(org):
    n = 8
    secrets = []
    with rls.organization_context(org_id=org.id):
        for i in range(n):
            secrets.append(services.registration_token_create(organization=org, actor=SYSTEM, device_name=f"d{i}")[1])
    services.root_ca()  # the root file exists (one process generates it; see pki.load_or_create_root)

    def attempt(i):
        response = Client().post(
            "/api/v1/devices/provision", {"token": secrets[i], "csr": ec_csr()}, content_type="application/json"
        )
        return response.status_code, response.json()

    results = _race(attempt, n)
    assert [status for status, _ in results] == [201] * n, results
    chains = {body["ca_chain"] for _, body in results}
    assert len(chains) == 1
    with rls.bypass(reason="test"):
        assert OrganizationCA.objects.filter(organization=org).count() == 1
