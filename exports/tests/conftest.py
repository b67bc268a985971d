import pytest


@pytest.fixture(autouse=True)
def no_rate_limits(settings):
    settings.RATE_LIMITS = {kind: "1000000/60" for kind in ("api_key", "user", "device", "anonymous")}


@pytest.fixture(autouse=True)
def local_storage(settings, tmp_path):
    """Export files go to a per-test folder (the local-files path); S3 tests override this."""
    media = tmp_path / "media"
    settings.MEDIA_ROOT = str(media)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(media)}},
    }
    return media


@pytest.fixture
def small_chunks(settings):
    settings.EXPORT_CHUNK_ROWS = 7
    settings.EXPORT_FETCH_ROWS = 3
