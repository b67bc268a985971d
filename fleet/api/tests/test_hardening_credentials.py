"""Issue 11, check 6: credential hygiene.

Every credential kind (org API key, device token, publishable key, app secret key, registration token,
organization CA private key) is created and used end to end through the API; then every column of
every table, the captured logs, the SQL that ran and every response body are scanned for the secrets
and for anything shaped like one. Revoked, rotated and expired credentials get byte-identical 401s.
"""

import logging
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from fleet.tenancy import credentials, rls

pytestmark = pytest.mark.django_db

PREFIXES = {
    "api_key": "sk_live_",
    "device_token": "dk_",
    "publishable_key": "pk_live_",
    "app_secret_key": "ak_live_",
    "registration_token": "rt_",
}
# A whole secret: its prefix, 40 random base62 characters and the 6-character checksum.
SECRET_SHAPE = re.compile(
    "(" + "|".join(re.escape(p) for p in PREFIXES.values()) + ")[0-9A-Za-z]{%d}" % (
        credentials.RANDOM_LENGTH + credentials.CHECKSUM_LENGTH
    )
)
PLAINTEXT_KEY = re.compile(r"-----BEGIN (RSA |EC )?PRIVATE KEY-----")


def bearer(secret):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


class Recorder:
    """Keeps every response body seen in the scenario."""

    def __init__(self):
        self.bodies = []

    def __call__(self, response, *expected):
        self.bodies.append(response.content.decode("utf-8", "replace"))
        if expected:
            assert response.status_code in expected, (response.status_code, response.content[:300])
        return response


def _scenario(client_a, org, seen):
    """Create and use every credential kind; return {kind: secret} and the CA private key PEM."""
    from provisioning.tests.factories import make_csr

    secrets_ = {}
    r = seen(client_a.post("/api/v1/api-keys", {"name": "hygiene", "role": "admin"}, format="json"), 201)
    secrets_["api_key"] = r.json()["key"]
    admin = bearer(secrets_["api_key"])
    seen(admin.get("/api/v1/organization"), 200)

    seen(admin.post("/api/v1/apps", {"name": "Hygiene", "slug": "hygiene"}, format="json"), 201)
    r = seen(admin.post("/api/v1/apps/hygiene/keys", {"kind": "publishable", "name": "web"}, format="json"), 201)
    secrets_["publishable_key"] = r.json()["key"]
    r = seen(admin.post("/api/v1/apps/hygiene/keys", {"kind": "secret", "name": "server"}, format="json"), 201)
    secrets_["app_secret_key"] = r.json()["key"]
    seen(bearer(secrets_["app_secret_key"]).get("/api/v1/apps/hygiene/inference-config"), 200, 404)

    r = seen(
        bearer(secrets_["publishable_key"]).post(
            "/api/v1/devices/register", {"device_id": "hyg-1", "app": "hygiene", "platform": "ios"}, format="json"
        ),
        200, 201,
    )
    secrets_["device_token"] = r.json()["api_key"]
    seen(bearer(secrets_["device_token"]).put("/api/v1/devices/hyg-1/heartbeat", {}, format="json"), 200)

    r = seen(admin.post("/api/v1/devices/registration/tokens", {"device_name": "gw", "device_id": "gw-1"},
                        format="json"), 201)
    secrets_["registration_token"] = r.json()["token"]
    r = seen(APIClient().post("/api/v1/devices/provision",
                              {"token": secrets_["registration_token"], "csr": make_csr()}, format="json"), 201)
    secrets_["provisioned_device_token"] = r.json()["api_key"]
    # A few failures, so error bodies are in the scan too.
    for kind, secret in secrets_.items():
        typo = secret[:-1] + ("A" if secret[-1] != "A" else "B")
        seen(bearer(typo).get("/api/v1/organization"), 401)
    seen(APIClient().post("/api/v1/devices/provision", {"token": secrets_["registration_token"], "csr": "x"},
                          format="json"))

    from cryptography.hazmat.primitives import serialization
    from django.conf import settings

    from provisioning.models import OrganizationCA

    with rls.bypass(reason="test: read the CA"):
        ca = OrganizationCA.objects.get(organization=org)
    key = serialization.load_pem_private_key(ca.encrypted_key_pem.encode(), settings.PKI_KEY_PASSPHRASE.encode())
    ca_key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return secrets_, ca_key_pem


def _all_rows_as_text():
    """Every value of every column of every table (the runtime role, through the audited bypass)."""
    chunks = {}
    with rls.bypass(reason="test: credential scan"):
        tables = connection.introspection.table_names()
        with connection.cursor() as cursor:
            for table in tables:
                cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
                rows = cursor.fetchall()
                text = []
                for row in rows:
                    for value in row:
                        if isinstance(value, (bytes, memoryview)):
                            value = bytes(value).decode("latin-1")
                        text.append(str(value))
                chunks[table] = "\n".join(text)
    return chunks


def test_no_plaintext_secret_in_database_logs_sql_or_error_bodies(client_a, org, caplog):
    caplog.set_level(logging.DEBUG)
    seen = Recorder()
    with CaptureQueriesContext(connection) as queries:
        secrets_, ca_key_pem = _scenario(client_a, org, seen)
    secrets_["fixture_api_key"] = client_a.api_key.secret
    assert set(PREFIXES) <= set(secrets_)
    for kind, prefix in PREFIXES.items():
        assert secrets_[kind].startswith(prefix)

    # Full base64 lines after the first (which is mostly the fixed PKCS#8 header of the key type).
    ca_key_lines = [line for line in ca_key_pem.splitlines()[2:] if len(line) == 64]
    assert ca_key_lines
    tables = _all_rows_as_text()
    places = {f"table {name}": text for name, text in tables.items()}
    places["logs"] = "\n".join(record.getMessage() for record in caplog.records) + caplog.text
    places["sql"] = "\n".join(query["sql"] for query in queries.captured_queries)
    # Bodies that hand a secret out once, by design, are the creation answers: skip those exact ones.
    created = set(secrets_.values())
    places["error bodies"] = "\n".join(
        body for body in seen.bodies if not any(secret in body for secret in created)
    )
    hits = []
    for place, text in places.items():
        for kind, secret in secrets_.items():
            if secret in text:
                hits.append(f"{kind} in {place}")
        if SECRET_SHAPE.search(text):
            hits.append(f"secret-shaped string in {place}: {SECRET_SHAPE.search(text).group(0)[:12]}…")
        if PLAINTEXT_KEY.search(text):
            hits.append(f"plaintext private key header in {place}")
        if any(line in text for line in ca_key_lines):
            hits.append(f"CA private key material in {place}")
    scanned = sum(len(text) for text in places.values())
    print(f"\ncredential scan: {len(secrets_)} secrets, {len(tables)} tables, {len(caplog.records)} log records, "
          f"{len(queries.captured_queries)} SQL statements, {len(seen.bodies)} response bodies, "
          f"{scanned} characters: {len(hits)} hits")
    assert hits == []


@pytest.mark.parametrize("prefix", ["sk_live_", "dk_", "pk_live_", "ak_live_", "rt_"])
def test_10000_generated_secrets_pass_their_checksum_and_are_distinct(prefix):
    generated = [credentials.generate(prefix=prefix) for _ in range(10_000)]
    assert len(set(generated)) == 10_000
    assert all(credentials.is_well_formed(secret=s, prefix=prefix) for s in generated)
    # One changed character is caught by the checksum (offline, no query): every position of a sample.
    sample = generated[0]
    flips = 0
    for index in range(len(prefix), len(sample)):
        replacement = "0" if sample[index] != "0" else "1"
        mutated = sample[:index] + replacement + sample[index + 1:]
        flips += not credentials.is_well_formed(secret=mutated, prefix=prefix)
    print(f"\n{prefix}: 10000 generated, 10000 distinct, 10000 well-formed; "
          f"{flips}/{len(sample) - len(prefix)} one-character typos rejected by the checksum")
    assert flips == len(sample) - len(prefix)


def test_revoked_rotated_and_expired_credentials_get_byte_identical_401s(client_a, org):
    from rest_framework_simplejwt.tokens import AccessToken

    from apps_catalog.tests.factories import AppFactory, AppKeyFactory
    from fleet.tenancy.tests.factories import ApiKeyFactory, MembershipFactory

    answers = {}

    def probe(name, client, method, path, data=None):
        response = getattr(client, method)(path, data, format="json") if data is not None else getattr(client, method)(path)
        answers[name] = (response.status_code, response.content)

    # Organization API keys: revoked, expired, unknown (well-formed), malformed.
    revoked = ApiKeyFactory(organization=org)
    assert client_a.delete(f"/api/v1/api-keys/{revoked.id}").status_code == 204
    probe("api key revoked", bearer(revoked.secret), "get", "/api/v1/organization")
    expired = ApiKeyFactory(organization=org, expires_at=timezone.now() - timedelta(seconds=1))
    probe("api key expired", bearer(expired.secret), "get", "/api/v1/organization")
    probe("api key unknown", bearer(credentials.generate(prefix="sk_live_")), "get", "/api/v1/organization")
    probe("api key malformed", bearer("sk_live_nope"), "get", "/api/v1/organization")

    # Device tokens: rotated by re-registration, revoked with the device.
    first = client_a.post("/api/v1/devices/register", {"device_id": "rot-1"}, format="json").json()["api_key"]
    second = client_a.post("/api/v1/devices/register", {"device_id": "rot-1"}, format="json").json()["api_key"]
    assert first != second
    probe("device token rotated", bearer(first), "put", "/api/v1/devices/rot-1/heartbeat", {})
    token = client_a.post("/api/v1/devices/register", {"device_id": "rev-1"}, format="json").json()["api_key"]
    assert client_a.post("/api/v1/devices/rev-1/revoke").status_code == 200
    probe("device token revoked", bearer(token), "put", "/api/v1/devices/rev-1/heartbeat", {})
    probe("device token unknown", bearer(credentials.generate(prefix="dk_")), "put", "/api/v1/devices/x/heartbeat", {})

    # App keys: revoked publishable and secret keys.
    app = AppFactory(organization=org)
    for kind in ("publishable", "secret"):
        key = AppKeyFactory(organization=org, app=app, kind=kind)
        assert client_a.delete(f"/api/v1/apps/{app.slug}/keys/{key.id}").status_code == 204
        probe(f"{kind} app key revoked", bearer(key.secret), "post", "/api/v1/devices/register", {"device_id": "z"})

    # User JWT: expired, and a member removed from the organization.
    membership = MembershipFactory(organization=org)
    stale = AccessToken.for_user(membership.user)
    stale["org_id"] = str(org.id)
    stale.set_exp(lifetime=-timedelta(minutes=1))
    probe("user jwt expired", bearer(str(stale)), "get", "/api/v1/organization")

    # Registration tokens: revoked and unknown answer the same.
    from provisioning.tests.factories import RegistrationTokenFactory, make_csr

    rt = RegistrationTokenFactory(organization=org, revoked_at=timezone.now())
    probe("registration token revoked", APIClient(), "post", "/api/v1/devices/provision",
          {"token": rt.secret, "csr": make_csr()})
    probe("registration token unknown", APIClient(), "post", "/api/v1/devices/provision",
          {"token": credentials.generate(prefix="rt_"), "csr": make_csr()})

    distinct = {answer for answer in answers.values()}
    print(f"\n401 bodies: {len(answers)} revoked/rotated/expired/unknown credentials of 6 kinds -> "
          f"{len(distinct)} distinct answer: {sorted(distinct)[0][1].decode()}")
    assert all(status == 401 for status, _ in answers.values()), answers
    assert len(distinct) == 1, answers
