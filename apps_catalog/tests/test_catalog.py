import json

import pytest
from django.core.management import CommandError, call_command

from apps_catalog import services
from apps_catalog.models import CatalogModel, ModelCapability, ModelVariant
from apps_catalog.tests.factories import CatalogModelFactory, ModelVariantFactory
from fleet.tenancy import rls

PUBLIC_MODEL_COUNT = 7


def public_model(name="yolov8n"):
    with rls.bypass(reason="test"):
        return CatalogModel.objects.get(organization__isnull=True, name=name)


def test_fresh_database_has_the_public_catalog(db):
    with rls.bypass(reason="test"):
        assert set(ModelCapability.objects.values_list("key", flat=True)) == {
            "vision", "chat", "transcription", "embedding", "detection"
        }
        for capability in ModelCapability.objects.all():
            count = ModelVariant.objects.filter(model__capability=capability, organization__isnull=True).count()
            assert 3 <= count <= 6, capability.key
        formats = set(ModelVariant.objects.values_list("format", flat=True))
    assert formats == {"coreml", "tflite", "onnx", "gguf", "executorch", "mlx"}


def test_capabilities_list(client_a):
    response = client_a.get("/api/v1/catalog/capabilities")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert [c["key"] for c in body["capabilities"]] == ["chat", "detection", "embedding", "transcription", "vision"]
    assert body["total"] == 5 and body["limit"] == 100 and body["offset"] == 0


def test_models_list_is_public_plus_own(client_a, org, other_org):
    mine = CatalogModelFactory(organization=org, name="my-model")
    CatalogModelFactory(organization=other_org, name="their-model")
    body = client_a.get("/api/v1/catalog/models?limit=1000").json()
    names = {m["name"] for m in body["models"]}
    assert "my-model" in names and "their-model" not in names and "yolov8n" in names
    assert body["total"] == PUBLIC_MODEL_COUNT + 1
    by_name = {m["name"]: m for m in body["models"]}
    assert by_name["my-model"]["public"] is False and by_name["yolov8n"]["public"] is True
    assert by_name["my-model"]["id"] == str(mine.id)

    private = client_a.get("/api/v1/catalog/models?scope=private").json()
    assert [m["name"] for m in private["models"]] == ["my-model"]
    vision = client_a.get("/api/v1/catalog/models?capability=vision").json()
    assert {m["capability"] for m in vision["models"]} == {"vision"}


def test_model_create_update_delete(client_a, org):
    response = client_a.post(
        "/api/v1/catalog/models", {"name": "custom-detector", "capability": "detection"}, format="json"
    )
    assert response.status_code == 201, response.json()
    model_id = response.json()["id"]
    assert response.json()["public"] is False

    duplicate = client_a.post("/api/v1/catalog/models", {"name": "custom-detector", "capability": "vision"}, format="json")
    assert duplicate.status_code == 409

    response = client_a.patch(f"/api/v1/catalog/models/{model_id}", {"description": "ours"}, format="json")
    assert response.status_code == 200 and response.json()["description"] == "ours"

    assert client_a.get(f"/api/v1/catalog/models/{model_id}").status_code == 200
    assert client_a.delete(f"/api/v1/catalog/models/{model_id}").status_code == 204
    assert client_a.get(f"/api/v1/catalog/models/{model_id}").status_code == 404


def test_model_create_validates_strictly(client_a):
    response = client_a.post(
        "/api/v1/catalog/models", {"name": "x", "capability": "telepathy", "colour": "red"}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"colour"}  # unknown fields are refused first
    response = client_a.post("/api/v1/catalog/models", {"name": "x", "capability": "telepathy"}, format="json")
    assert response.status_code == 400 and "capability" in response.json()["fields"]


def test_public_catalog_is_read_only(client_a):
    model = public_model()
    assert client_a.get(f"/api/v1/catalog/models/{model.id}").status_code == 200
    response = client_a.patch(f"/api/v1/catalog/models/{model.id}", {"description": "mine now"}, format="json")
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    assert client_a.delete(f"/api/v1/catalog/models/{model.id}").status_code == 403
    variant = {"name": "v", "version": "1", "format": "onnx", "quantization": "int8", "platforms": ["web"]}
    assert client_a.post(f"/api/v1/catalog/models/{model.id}/variants", variant, format="json").status_code == 403


def test_public_catalog_service_guard(org_context, org):
    model = public_model()
    org_context(org)
    from fleet.errors import Forbidden

    with pytest.raises(Forbidden):
        services.catalog_model_update(model=model, description="x")


def test_other_organizations_model_is_404(client_a, other_org):
    theirs = CatalogModelFactory(organization=other_org)
    assert client_a.get(f"/api/v1/catalog/models/{theirs.id}").status_code == 404
    assert client_a.patch(f"/api/v1/catalog/models/{theirs.id}", {"name": "x"}, format="json").status_code == 404
    assert client_a.delete(f"/api/v1/catalog/models/{theirs.id}").status_code == 404
    assert client_a.get(f"/api/v1/catalog/models/{theirs.id}/variants").status_code == 404
    assert client_a.get("/api/v1/catalog/models/not-a-uuid").status_code == 404


def test_variants_of_a_model(client_a, org):
    model = CatalogModelFactory(organization=org, name="mine")
    body = {
        "name": "mine-coreml",
        "version": "2.0",
        "format": "coreml",
        "quantization": "fp16",
        "platforms": ["ios"],
        "min_ram_mb": 512,
        "accelerators": "npu",
        "size_bytes": 1000,
        "artifact_url": "https://example.com/a.zip",
        "sha256": "a" * 64,
        "quality_score": 0.9,
        "latency_ms": {"phone_flagship": 12},
    }
    response = client_a.post(f"/api/v1/catalog/models/{model.id}/variants", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["capability"] == "vision" and response.json()["public"] is False
    with rls.bypass(reason="test"):
        assert ModelVariant.objects.get(id=response.json()["id"]).organization_id == org.id  # copied for RLS
    assert client_a.post(f"/api/v1/catalog/models/{model.id}/variants", body, format="json").status_code == 409

    listed = client_a.get(f"/api/v1/catalog/models/{model.id}/variants").json()
    assert [v["name"] for v in listed["variants"]] == ["mine-coreml"] and listed["total"] == 1

    public = public_model("whisper-tiny")
    listed = client_a.get(f"/api/v1/catalog/models/{public.id}/variants").json()
    assert listed["total"] == 3


@pytest.mark.parametrize(
    "change, field",
    [
        ({"format": "tensorrt"}, "format"),
        ({"quantization": "int2"}, "quantization"),
        ({"platforms": ["ios", "ios"]}, "platforms"),
        ({"platforms": ["symbian"]}, "platforms.0"),
        ({"quality_score": 1.5}, "quality_score"),
        ({"accelerators": "tpu"}, "accelerators"),
        ({"latency_ms": {"Flagship Phone": 3}}, "latency_ms"),
        ({"latency_ms": {"phone": -1}}, "latency_ms.phone"),
        ({"sha256": "xyz"}, "sha256"),
        ({"extra": 1}, "extra"),
    ],
)
def test_variant_validation(client_a, org, change, field):
    model = CatalogModelFactory(organization=org)
    body = {"name": "v", "version": "1", "format": "onnx", "quantization": "int8", "platforms": ["web"], **change}
    response = client_a.post(f"/api/v1/catalog/models/{model.id}/variants", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"], response.json()


def test_variants_filters(client_a, org, other_org):
    ModelVariantFactory(model=CatalogModelFactory(organization=org), name="mine", format="gguf", platforms=["linux"])
    ModelVariantFactory(model=CatalogModelFactory(organization=other_org), name="theirs", format="gguf")
    everything = client_a.get("/api/v1/catalog/variants?limit=1000").json()
    names = {v["name"] for v in everything["variants"]}
    assert "mine" in names and "theirs" not in names

    chat = client_a.get("/api/v1/catalog/variants?capability=chat").json()
    assert chat["total"] == 6 and {v["capability"] for v in chat["variants"]} == {"chat"}

    gguf = client_a.get("/api/v1/catalog/variants?format=gguf").json()
    assert {v["format"] for v in gguf["variants"]} == {"gguf"} and "mine" in {v["name"] for v in gguf["variants"]}

    ios = client_a.get("/api/v1/catalog/variants?platform=ios&limit=1000").json()
    assert ios["total"] > 0 and all("ios" in v["platforms"] for v in ios["variants"])
    macos = client_a.get("/api/v1/catalog/variants?platform=macos&capability=chat").json()
    assert {v["name"] for v in macos["variants"]} == {
        "llama-3.2-1b-gguf-q4", "llama-3.2-1b-mlx-int4", "qwen2.5-0.5b-gguf-q4", "qwen2.5-0.5b-mlx-fp16"
    }

    bad = client_a.get("/api/v1/catalog/variants?format=tensorrt")
    assert bad.status_code == 400 and "format" in bad.json()["fields"]


def test_list_query_counts_do_not_grow(client_a, org, django_assert_max_num_queries):
    for n in range(5):
        model = CatalogModelFactory(organization=org)
        ModelVariantFactory(model=model)
    model = CatalogModelFactory(organization=org)
    for n in range(3):
        ModelVariantFactory(model=model)
    client_a.get("/api/v1/catalog/capabilities")  # warm-up (last_used_at)
    for url in (
        "/api/v1/catalog/models",
        "/api/v1/catalog/variants",
        "/api/v1/catalog/capabilities",
        f"/api/v1/catalog/models/{model.id}/variants",
    ):
        with django_assert_max_num_queries(8) as small_queries:
            small = client_a.get(f"{url}?limit=1")
        with django_assert_max_num_queries(8) as large_queries:
            large = client_a.get(f"{url}?limit=1000")
        assert small.status_code == large.status_code == 200
        assert len(small_queries.captured_queries) == len(large_queries.captured_queries)
        key = next(k for k in large.json() if isinstance(large.json()[k], list))
        assert len(large.json()[key]) > 1


def test_load_catalog_is_idempotent(db, tmp_path):
    data = {
        "capabilities": [{"key": "ocr", "name": "OCR", "description": "Text in images."}],
        "models": [
            {
                "name": "tiny-ocr",
                "capability": "ocr",
                "variants": [
                    {"name": "tiny-ocr-onnx", "version": "1", "format": "onnx", "quantization": "int8",
                     "platforms": ["web"], "latency_ms": {"laptop": 30}},
                ],
            }
        ],
    }
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    call_command("load_catalog", str(path))
    data["models"][0]["variants"][0]["quality_score"] = 0.5
    path.write_text(json.dumps(data))
    call_command("load_catalog", str(path))
    with rls.bypass(reason="test"):
        variants = ModelVariant.objects.filter(model__name="tiny-ocr")
        assert variants.count() == 1 and variants.get().quality_score == 0.5
        assert variants.get().organization_id is None


def test_load_catalog_shipped_fixture_twice(db):
    with rls.bypass(reason="test"):
        before = ModelVariant.objects.count()
    call_command("load_catalog")
    with rls.bypass(reason="test"):
        assert ModelVariant.objects.count() == before


def test_load_catalog_refuses_bad_files(db, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"models": [{"name": "x", "capability": "vision", "variants": [
        {"name": "x1", "version": "1", "format": "tensorrt", "quantization": "int8"}]}]}))
    with pytest.raises(CommandError, match="format"):
        call_command("load_catalog", str(path))
    path.write_text("{not json")
    with pytest.raises(CommandError):
        call_command("load_catalog", str(path))
    with rls.bypass(reason="test"):
        assert not CatalogModel.objects.filter(name="x").exists()
