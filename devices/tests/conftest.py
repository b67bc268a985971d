import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from devices.tests.factories import registered_device

TRANSACTION_CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT")


@pytest.fixture(autouse=True)
def media_storage(settings, tmp_path):
    """Frames go to a per-test folder through default_storage."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    return tmp_path


@pytest.fixture(autouse=True)
def generous_rate_limits(settings):
    """The suite makes many requests per credential (and anonymous ones from one address)."""
    settings.RATE_LIMITS = {kind: "1000000/60" for kind in (*settings.RATE_LIMITS, "anonymous", "device")}


@pytest.fixture
def device(org):
    return registered_device(org, platform="python", name="Laptop", labels={"site": "berlin"})


def device_client(device_or_secret):
    secret = getattr(device_or_secret, "secret", device_or_secret)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def dclient(device):
    return device_client(device)


def jpeg_bytes(width=32, height=24, color=(200, 30, 30)):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="JPEG")
    return buffer.getvalue()


class Statements(CaptureQueriesContext):
    """Captured SQL minus transaction control (savepoints of the test's own transaction)."""

    @property
    def sql(self):
        return [q["sql"] for q in self.captured_queries if not q["sql"].upper().startswith(TRANSACTION_CONTROL)]

    def __len__(self):
        return len(self.sql)

    @property
    def transaction_control(self):
        return [q["sql"] for q in self.captured_queries if q["sql"].upper().startswith(TRANSACTION_CONTROL)]


@pytest.fixture
def statements():
    return lambda: Statements(connection)
