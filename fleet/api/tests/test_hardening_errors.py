"""Issue 11, checks 2 and 4: one error contract for every 4xx/5xx source, and request limits.

Each case triggers one error source on a real operation and asserts the common body
{"error", "message", "fields"} and that the schema documents the status for that operation.
"""

import io
import json
import uuid

import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from fleet.api.errors import CODES

pytestmark = pytest.mark.django_db

SEEN = {}  # status -> source, printed at the end (figure for docs/security.md)


def assert_contract(response, status, documented, method, path, source):
    assert response.status_code == status, (source, response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), source
    body = response.json()
    assert set(body) == {"error", "message", "fields"}, (source, body)
    assert body["error"] == CODES[status] and body["message"], (source, body)
    assert isinstance(body["fields"], dict)
    codes = documented(method, path)
    if status == 405:  # the path is documented, the method is not
        assert codes is None and any(documented(m, path) for m in ("get", "post", "patch", "put", "delete"))
    elif codes is not None:
        assert str(status) in codes, f"{method} {path}: {status} not documented ({sorted(codes)})"
    else:  # unknown route: no operation to document it
        assert status == 404, source
    SEEN.setdefault(status, []).append(source)
    return body


def test_validation_parse_auth_permission_and_routing_errors(client_a, make_client, org, documented):
    keys = "/api/v1/api-keys"
    r = client_a.post(keys, {}, format="json")
    body = assert_contract(r, 400, documented, "post", keys, "DRF validation")
    assert "name" in body["fields"]

    r = client_a.post(keys, "{not json", content_type="application/json")
    assert_contract(r, 400, documented, "post", keys, "JSON parse error")

    r = APIClient().get("/api/v1/organization")
    assert_contract(r, 401, documented, "get", "/api/v1/organization", "no credentials")
    assert r["WWW-Authenticate"]
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer sk_live_" + "A" * 46)
    assert_contract(bad.get("/api/v1/organization"), 401, documented, "get", "/api/v1/organization", "bad key")

    viewer = make_client(org, role="viewer")
    r = viewer.post(keys, {"name": "x"}, format="json")
    assert_contract(r, 403, documented, "post", keys, "role too low")

    path = f"/api/v1/api-keys/{uuid.uuid4()}"
    assert_contract(client_a.get(path), 404, documented, "get", path, "missing object")
    assert_contract(client_a.get("/api/v1/no-such-route"), 404, documented, "get", "/api/v1/no-such-route", "unknown route")
    assert_contract(client_a.get("/api/nope/x"), 404, documented, "get", "/api/nope/x", "unknown route outside v1")

    r = client_a.put("/api/v1/organization", {}, format="json")
    assert_contract(r, 405, documented, "put", "/api/v1/organization", "method not allowed")

    r = client_a.get("/api/v1/organization", HTTP_ACCEPT="application/xml")
    assert_contract(r, 406, documented, "get", "/api/v1/organization", "not acceptable")

    r = client_a.post(keys, "name=x", content_type="text/plain")
    assert_contract(r, 415, documented, "post", keys, "unsupported media type")


def test_csrf_is_enforced_for_session_posts(org, documented):
    from fleet.tenancy.tests.factories import MembershipFactory

    membership = MembershipFactory(organization=org)
    browser = Client(enforce_csrf_checks=True)
    assert browser.login(username=membership.user.username, password="correct horse battery")
    ok = browser.get("/api/v1/organization", HTTP_ACCEPT="application/json")
    assert ok.status_code == 200  # the session works for reads
    r = browser.post("/api/v1/api-keys", json.dumps({"name": "x"}), content_type="application/json")
    body = assert_contract(r, 403, documented, "post", "/api/v1/api-keys", "CSRF (session post)")
    assert "CSRF" in body["message"]


@override_settings(RATE_LIMITS={**settings.RATE_LIMITS, "api_key": "2/60"})
def test_throttling_error(client_a, documented, rate_window):
    for _ in range(2):
        assert client_a.get("/api/v1/api-keys").status_code == 200
    r = client_a.get("/api/v1/api-keys")
    assert_contract(r, 429, documented, "get", "/api/v1/api-keys", "rate limited")
    assert int(r["Retry-After"]) >= 1


def test_every_operation_documents_the_generic_errors(openapi_schema):
    """500 (crash, see test_errors.test_unexpected_error_is_500_without_internals), 429 and 406 can happen
    anywhere; 413/415/411 wherever there is a body."""
    count = 0
    for path, operations in openapi_schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"429", "500", "406"} <= codes, (method, path)
            if "requestBody" in operation and method in ("post", "put", "patch"):
                assert {"411", "413", "415"} <= codes, (method, path)
            count += 1
    print(f"\nerror contract: {count} operations document 406/429/500 (+411/413/415 with a body)")


def test_500_error_source(client_a, settings):
    from fleet.api.tests import test_errors

    settings.ROOT_URLCONF = test_errors.__name__
    client_a.raise_request_exception = False
    r = client_a.get("/api/v1/test-boom")
    assert r.status_code == 500 and set(r.json()) == {"error", "message", "fields"}
    assert "hunter2" not in r.content.decode()
    SEEN.setdefault(500, []).append("unhandled exception")


# --- 4. request limits ---------------------------------------------------------------------------
@override_settings(JSON_MAX_BYTES=1000)
def test_json_default_cap_is_413_with_content_length(client_a, documented):
    r = client_a.post("/api/v1/api-keys", {"name": "x" * 2000}, format="json")
    body = assert_contract(r, 413, documented, "post", "/api/v1/api-keys", "JSON default cap")
    assert "1000" in body["message"]
    assert client_a.post("/api/v1/api-keys", {"name": "small"}, format="json").status_code == 201


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=5000)
def test_global_cap_is_413_before_routing(client_a, documented):
    r = client_a.post("/api/v1/readings/batch", {"readings": ["x" * 6000]}, format="json")
    assert_contract(r, 413, documented, "post", "/api/v1/readings/batch", "global cap (middleware)")


@override_settings(READINGS_BATCH_MAX_BYTES=2000)
def test_readings_batch_has_its_own_cap(client_a, documented):
    readings = [{"device_id": "d", "metric": "m", "value": 1, "ts": "2026-01-01T00:00:00Z"}] * 60
    r = client_a.post("/api/v1/readings/batch", {"readings": readings}, format="json")
    assert_contract(r, 413, documented, "post", "/api/v1/readings/batch", "readings batch cap")


def test_readings_batch_cap_admits_a_full_batch():
    item = {"device_id": "device-0000000001", "metric": "cpu_temperature", "value": 123456.789,
            "ts": "2026-01-01T00:00:00.000000Z", "unit": "celsius"}
    full = len(json.dumps({"readings": [item] * settings.READINGS_BATCH_MAX}))
    print(f"\nreadings batch: {settings.READINGS_BATCH_MAX} items = {full} bytes <= cap {settings.READINGS_BATCH_MAX_BYTES}")
    assert full <= settings.READINGS_BATCH_MAX_BYTES


@override_settings(FRAME_MAX_BYTES=10_000)
def test_frame_cap_plus_one_byte_is_413(org, documented):
    from devices.tests.factories import registered_device

    device = registered_device(org)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {device.secret}")
    path = f"/api/v1/devices/{device.device_id}/frames"
    r = client.post(path, b"\xff\xd8\xff" + b"\0" * 9998, content_type="image/jpeg")
    assert_contract(r, 413, documented, "post", path, "frame cap + 1 byte")
    r = client.post(path, b"\xff\xd8\xff" + b"\0" * 200_000, content_type="image/jpeg")
    assert_contract(r, 413, documented, "post", path, "frame body far above the cap")


def test_without_content_length_django_reads_no_body():
    """What happens to a chunked body under WSGI: Django's request sees an empty body."""
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/api-keys", "SERVER_NAME": "testserver", "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(b'{"name": "lost"}'), "wsgi.url_scheme": "http",
        "CONTENT_TYPE": "application/json", "HTTP_TRANSFER_ENCODING": "chunked",
    }
    assert WSGIRequest(environ).body == b""


def test_chunked_body_without_content_length_is_411_not_silently_empty(client_a, documented):
    """So the middleware refuses it (411) instead of letting a view accept an empty body."""
    from fleet.tenancy import rls
    from fleet.tenancy.models import ApiKey

    # RequestFactory sets no CONTENT_LENGTH for an empty payload: exactly what a chunked body looks like.
    r = client_a.generic("POST", "/api/v1/api-keys", b"", content_type="application/json",
                         HTTP_TRANSFER_ENCODING="chunked")
    assert_contract(r, 411, documented, "post", "/api/v1/api-keys", "chunked body (no Content-Length)")
    path = "/api/v1/devices/x/heartbeat"
    r = client_a.generic("PUT", path, b"", content_type="application/json", HTTP_TRANSFER_ENCODING="chunked")
    assert_contract(r, 411, documented, "put", path, "chunked heartbeat")
    with rls.bypass(reason="test"):
        assert ApiKey.objects.count() == 1  # only client_a's own key


def _nested(depth):
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "payload, what",
    [
        ('{"name": ' + _nested(settings.JSON_MAX_DEPTH) + "}", "nesting depth"),
        ('{"name": ' + _nested(100_000) + "}", "nesting far beyond the recursion limit"),
        (json.dumps({"name": "x" * (settings.JSON_MAX_STRING_LENGTH + 1)}), "string length"),
        (json.dumps({"n" * (settings.JSON_MAX_STRING_LENGTH + 1): 1}), "key length"),
        ('{"name": NaN}', "NaN"),
        (b'{"name": "\xff\xfe"}', "invalid UTF-8"),
        ('{"name": "\\ud800"}', "lone surrogate escape"),
        ('{"name": "a\\u0000b"}', "NUL character"),
        ('{"\\udc00": 1}', "lone surrogate in a key"),
    ],
)
@override_settings(JSON_MAX_BYTES=2 * 1024 * 1024)
def test_json_bounds(client_a, documented, payload, what):
    r = client_a.post("/api/v1/api-keys", payload, content_type="application/json")
    body = assert_contract(r, 400, documented, "post", "/api/v1/api-keys", f"JSON bound: {what}")
    assert body["error"] == "bad_request"


def test_nul_in_path_or_query_is_a_4xx_not_a_500(client_a, documented):
    path = "/api/v1/devices/a%00b"
    assert_contract(client_a.get(path), 404, documented, "get", "/api/v1/devices/x", "NUL in a path parameter")
    r = client_a.get("/api/v1/activity?verb=a%00b")
    assert_contract(r, 400, documented, "get", "/api/v1/activity", "NUL in a query parameter")


def test_a_single_valued_query_parameter_given_twice_is_400(client_a, documented):
    r = client_a.get("/api/v1/routing/stats?window=24h&window=7d")
    body = assert_contract(r, 400, documented, "get", "/api/v1/routing/stats", "repeated query parameter")
    assert "window" in body["fields"]
    assert client_a.get("/api/v1/routing/stats?window=24h").status_code == 200


def test_json_within_bounds_is_accepted(client_a):
    r = client_a.post("/api/v1/api-keys", {"name": "x" * 100}, format="json")
    assert r.status_code == 201


def test_zz_error_sources_summary():
    """Figure for docs/security.md (runs last in this module)."""
    print(f"\nerror sources checked: {sum(len(v) for v in SEEN.values())} over statuses {sorted(SEEN)}")
    for status, sources in sorted(SEEN.items()):
        print(f"  {status}: {', '.join(sources)}")
