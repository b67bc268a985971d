import pytest
from rest_framework.test import APIClient

from provisioning import services


@pytest.fixture(autouse=True)
def pki_files(settings, tmp_path):
    """The platform root goes to a per-test folder, never into the real var/."""
    settings.PKI_ROOT_CERT_FILE = tmp_path / "pki" / "root-ca.pem"
    settings.PKI_ROOT_KEY_FILE = tmp_path / "pki" / "root-ca.key.pem"
    settings.PKI_KEY_PASSPHRASE = "test passphrase"
    services._root_cache.clear()
    yield tmp_path / "pki"
    services._root_cache.clear()


@pytest.fixture(autouse=True)
def no_rate_limits(settings):
    """Many anonymous provisions from one test client address: lift every limit (kept as keys)."""
    settings.RATE_LIMITS = {scope: "1000000/60" for scope in settings.RATE_LIMITS}


@pytest.fixture
def anonymous():
    return APIClient()


@pytest.fixture
def bearer():
    def make(secret):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    return make
