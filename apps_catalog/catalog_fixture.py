"""The public catalog file format and its idempotent upsert, shared by `load_catalog`, the data
migration (with historical models) and services.catalog_load."""

import json
from pathlib import Path

DEFAULT_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "public_catalog.json"

VARIANT_FIELDS = (
    "format",
    "quantization",
    "platforms",
    "min_ram_mb",
    "accelerators",
    "size_bytes",
    "artifact_url",
    "sha256",
    "quality_score",
    "latency_ms",
)


def read_fixture(path=DEFAULT_FIXTURE):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load_into(data, *, capability_model, model_model, variant_model):
    """Upsert capabilities (by key), public models (by name) and variants (by model, name, version)."""
    counts = {"capabilities": 0, "models": 0, "variants": 0}
    for item in data.get("capabilities", []):
        capability_model.objects.update_or_create(
            key=item["key"], defaults={"name": item.get("name", ""), "description": item.get("description", "")}
        )
        counts["capabilities"] += 1
    for item in data.get("models", []):
        capability = capability_model.objects.get(key=item["capability"])
        model, _ = model_model.objects.update_or_create(
            organization=None,
            name=item["name"],
            defaults={"capability": capability, "description": item.get("description", "")},
        )
        counts["models"] += 1
        for variant in item.get("variants", []):
            defaults = {field: variant[field] for field in VARIANT_FIELDS if field in variant}
            variant_model.objects.update_or_create(
                model=model,
                name=variant["name"],
                version=variant["version"],
                defaults={**defaults, "organization": None},
            )
            counts["variants"] += 1
    return counts
