from types import SimpleNamespace

import pytest

from deployments.classifier import (
    CLASSIFIER_VERSION,
    classify,
    device_facts,
    score_variant,
)

GB = 1024**3


@pytest.mark.parametrize(
    ("platform", "capabilities", "hardware", "os_name", "expected"),
    [
        # phones: the 6144 MB / 3072 MB boundaries, npu or 8 cores for flagship
        ("ios", {"npu": True}, {"ram": 6 * GB, "cpu_cores": 6}, "iOS", "phone_flagship"),
        ("android", {}, {"ram": 6 * GB, "cpu_cores": 8}, "Android", "phone_flagship"),
        ("android", {}, {"ram": 6 * GB, "cpu_cores": 6}, "Android", "phone_midrange"),
        ("ios", {"npu": True}, {"ram": 6 * GB - 1024 * 1024, "cpu_cores": 6}, "iOS", "phone_midrange"),
        ("android", {}, {"ram": 3 * GB}, "Android", "phone_midrange"),
        ("android", {}, {"ram": 3 * GB - 1024 * 1024}, "Android", "phone_low_end"),
        ("android", {}, {}, "Android", "phone_low_end"),  # unknown RAM counts as 0
        ("ios", {"memory_gb": 8, "accelerators": ["npu"]}, {}, "iOS", "phone_flagship"),
        # edge
        ("edge", {"npu": "hailo-8"}, {}, "Linux", "edge_npu"),
        ("edge", {"gpu": "jetson"}, {}, "Linux", "edge_gpu"),
        ("edge", {"gpu": "none"}, {}, "Linux", "edge_cpu"),
        # desktops and servers: 16 cores and 32768 MB make a Linux server
        ("linux", {}, {"ram": 64 * GB, "cpu_cores": 32}, "Ubuntu", "server_cpu"),
        ("python", {"gpu": True}, {"ram": 32 * GB, "cpu_cores": 16}, "Linux", "server_gpu"),
        ("linux", {}, {"ram": 32 * GB, "cpu_cores": 15}, "Ubuntu", "laptop"),
        ("macos", {}, {"ram": 64 * GB, "cpu_cores": 16}, "macOS", "laptop"),
        ("python", {}, {"ram": 64 * GB, "cpu_cores": 32}, "Windows 11", "laptop"),
        ("windows", {"gpu": True}, {"ram": 8 * GB}, "Windows 11", "desktop_gpu"),
        ("windows", {"gpu": True}, {"ram": 8 * GB - 1024 * 1024}, "Windows 11", "laptop"),
        ("python", {"cpu": "4-core", "memory_gb": 8, "gpu": False}, {}, None, "laptop"),  # seed 003's example
        ("web", {}, {}, None, "laptop"),
    ],
)
def test_class_boundaries(platform, capabilities, hardware, os_name, expected):
    assert classify(platform=platform, capabilities=capabilities, hardware=hardware, os_name=os_name) == expected


def test_classifier_is_deterministic_and_versioned():
    args = {"platform": "android", "capabilities": {"npu": True}, "hardware": {"ram": 8 * GB, "cpu_cores": 8}, "os_name": "Android"}
    assert {classify(**args) for _ in range(5)} == {"phone_flagship"}
    assert CLASSIFIER_VERSION


def variant(**fields):
    base = {
        "platforms": ["android", "ios"],
        "format": "tflite",
        "min_ram_mb": 512,
        "accelerators": "none",
        "quality_score": 0.7,
        "size_bytes": 10 * 1024 * 1024,
        "latency_ms": {"phone_flagship": 10, "phone_midrange": 20},
    }
    return SimpleNamespace(**{**base, **fields})


@pytest.mark.parametrize(
    ("device", "fields", "reason"),
    [
        ({"platform": "ios"}, {"platforms": ["android"]}, "platform"),
        ({"platform": "ios"}, {"platforms": ["ios"], "format": "tflite"}, "format"),
        ({"platform": "android", "ram_mb": 256}, {}, "ram"),
        ({"platform": "android", "accelerators": set()}, {"accelerators": "npu"}, "accelerator"),
        ({"platform": "android", "accelerators": {"gpu"}}, {"accelerators": "npu"}, "accelerator"),
    ],
)
def test_incompatibility_reasons(device, fields, reason):
    result = score_variant(
        device_class="phone_midrange",
        platform=device["platform"],
        ram_mb=device.get("ram_mb", 4096),
        accelerators=device.get("accelerators", set()),
        variant=variant(**fields),
    )
    assert result["compatible"] is False and result["score"] == 0.0
    assert [r.split(":")[0] for r in result["reasons"]] == [reason]


def test_compatible_score_follows_the_documented_formula(settings):
    settings.CLASSIFIER_WEIGHTS = {"quality": 0.5, "latency": 0.35, "size": 0.15, "latency_ref_ms": 100.0, "size_ref_mb": 500.0}
    result = score_variant(device_class="phone_midrange", platform="android", ram_mb=4096, accelerators={"npu"},
                           variant=variant(accelerators="npu"))
    expected = 0.5 * 0.7 + 0.35 * 100 / (100 + 20) + 0.15 * 1 / (1 + 10 / 500)
    assert result == {"compatible": True, "reasons": [], "predicted_latency_ms": 20.0, "score": round(expected, 4)}


def test_weights_come_from_settings(settings):
    settings.CLASSIFIER_WEIGHTS = {"quality": 1.0, "latency": 0.0, "size": 0.0}
    result = score_variant(device_class="phone_midrange", platform="android", ram_mb=4096, accelerators=set(), variant=variant())
    assert result["score"] == 0.7


def test_missing_latency_borrows_from_a_neighbour_class():
    result = score_variant(device_class="phone_low_end", platform="android", ram_mb=4096, accelerators=set(), variant=variant())
    assert result["predicted_latency_ms"] == 50.0  # phone_midrange 20 ms x 2.5
    unknown = score_variant(device_class="server_cpu", platform="server", ram_mb=65536, accelerators=set(),
                            variant=variant(platforms=["server"], format="onnx", latency_ms={}))
    assert unknown["compatible"] and unknown["predicted_latency_ms"] is None


def test_device_facts_map_python_devices_to_catalog_platforms():
    facts = device_facts(platform="python", capabilities={}, hardware={"ram": 64 * GB, "cpu_cores": 32}, os_name="Ubuntu")
    assert facts == {"device_class": "server_cpu", "platforms": {"linux", "server"}, "ram_mb": 65536, "accelerators": set()}
    mac = device_facts(platform="python", capabilities={"gpu": True}, hardware={"ram": 16 * GB}, os_name="Darwin")
    assert mac["platforms"] == {"macos"} and mac["device_class"] == "desktop_gpu"
