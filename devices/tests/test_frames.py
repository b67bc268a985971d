import pytest
from django.core.files.storage import default_storage

from devices.models import Device
from devices.tests.conftest import jpeg_bytes
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db


def url(device, suffix="frames"):
    return f"/api/v1/devices/{device.device_id}/{suffix}"


def fresh(device):
    with rls.bypass(reason="test"):
        return Device.objects.get(pk=device.pk)


def test_upload_raw_jpeg_and_read_it_back(device, dclient, client_a):
    content = jpeg_bytes(64, 48)
    response = dclient.post(url(device), content, content_type="image/jpeg")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["size_bytes"] == len(content) and body["width"] == 64 and body["height"] == 48
    assert body["captured_at"].endswith("Z")

    latest = client_a.get(url(device, "frames/latest"))
    assert latest.status_code == 200
    assert latest["Content-Type"] == "image/jpeg"
    assert latest.content == content
    assert latest["Cache-Control"] == "private, max-age=5"
    assert latest["Last-Modified"]
    etag = latest["ETag"]
    again = client_a.get(url(device, "frames/latest"), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b""
    assert client_a.get(url(device, "frames/latest"), HTTP_IF_NONE_MATCH='"other"').status_code == 200
    assert dclient.get(url(device, "frames/latest")).status_code == 200
    assert client_a.get(f"/api/v1/devices/{device.device_id}").json()["latest_frame"]["width"] == 64


def test_upload_multipart_replaces_and_deletes_previous(
    device, dclient, client_a, media_storage, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    assert dclient.post(url(device), jpeg_bytes(), content_type="image/jpeg").status_code == 201
    first_path = fresh(device).frame_path
    assert default_storage.exists(first_path)
    upload = SimpleUploadedFile("frame.jpg", jpeg_bytes(10, 10, (0, 0, 255)), content_type="image/jpeg")
    with django_capture_on_commit_callbacks(execute=True):
        response = client_a.post(url(device), {"frame": upload}, format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["width"] == 10
    second_path = fresh(device).frame_path
    assert second_path != first_path
    assert default_storage.exists(second_path)
    assert not default_storage.exists(first_path)
    # frame events at most once an hour
    verbs = [e["verb"] for e in client_a.get(f"/api/v1/devices/{device.device_id}/activity").json()["events"]]
    assert verbs.count("device.frame_uploaded") == 1


def test_no_frame_yet_is_404(device, client_a):
    response = client_a.get(url(device, "frames/latest"))
    assert response.status_code == 404 and response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("content", "content_type", "code"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"0" * 100, "image/jpeg", 400),
        (b"not an image", "image/jpeg", 400),
        (None, "image/jpeg", 400),  # truncated JPEG
        (b"\xff\xd8\xff\xe0" + b"\0" * 20, "image/jpeg", 400),
        (b"", "image/jpeg", 400),
        (b"GIF89a", "image/gif", 415),
        (b'{"frame": "x"}', "application/json", 415),
        (b"plain", "text/plain", 415),
    ],
)
def test_upload_rejects_non_jpeg(device, dclient, content, content_type, code):
    if content is None:
        content = jpeg_bytes(200, 200)[:400]
    response = dclient.post(url(device), content, content_type=content_type)
    assert response.status_code == code, response.content
    assert response.json()["error"] == {400: "bad_request", 415: "unsupported_media_type"}[code]
    if code == 400:
        assert "frame" in response.json()["fields"]
    assert fresh(device).frame_path == ""


def test_multipart_without_frame_field(device, dclient):
    response = dclient.post(url(device), {"other": "x"}, format="multipart")
    assert response.status_code == 400 and "frame" in response.json()["fields"]


def test_oversize_frame_is_413(device, dclient, settings):
    settings.FRAME_MAX_BYTES = 1000
    content = jpeg_bytes(400, 400, (10, 200, 10))
    assert len(content) > 1000
    response = dclient.post(url(device), content, content_type="image/jpeg")
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("frame.jpg", content, content_type="image/jpeg")
    assert dclient.post(url(device), {"frame": upload}, format="multipart").status_code == 413


def test_default_cap_is_5_mb(settings):
    assert settings.FRAME_MAX_BYTES == 5 * 1024 * 1024


def test_decompression_bomb_is_400(device, dclient, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64x64 = 4096 > 2 x 100: DecompressionBombError
    response = dclient.post(url(device), jpeg_bytes(64, 64), content_type="image/jpeg")
    assert response.status_code == 400
    assert "frame" in response.json()["fields"]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 4096 > 3000: the warning is an error too
    assert dclient.post(url(device), jpeg_bytes(64, 64), content_type="image/jpeg").status_code == 400


def test_other_organization_cannot_see_frames(device, dclient, client_b):
    dclient.post(url(device), jpeg_bytes(), content_type="image/jpeg")
    assert client_b.get(url(device, "frames/latest")).status_code == 404
    assert client_b.post(url(device), jpeg_bytes(), content_type="image/jpeg").status_code == 404
