import pytest
from rest_framework.test import APIClient

from apps_catalog.tests.factories import AppFactory, AppKeyFactory


@pytest.fixture
def app(org):
    return AppFactory(organization=org, slug="camera")


@pytest.fixture
def bearer():
    def make(secret):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    return make


@pytest.fixture
def publishable_client(app, bearer):
    key = AppKeyFactory(organization=app.organization, app=app, kind="publishable")
    client = bearer(key.secret)
    client.app_key = key
    return client
