"""The device classifier: a pure, deterministic function of a device's reported inventory, and the
variant scorer. No database access here (profiles are stored by orchestrator.profiles_refresh).

Classes match the keys of `ModelVariant.latency_ms` in the public catalog. Boundaries (documented in
docs/orchestration.md, changing them bumps CLASSIFIER_VERSION):

    ios / android           phone_flagship  RAM >= 6144 MB and (npu or >= 8 cores)
                            phone_midrange  RAM >= 3072 MB
                            phone_low_end   otherwise (unknown RAM counts as 0)
    edge                    edge_npu if npu, edge_gpu if gpu, else edge_cpu
    linux / python          server_gpu / server_cpu when >= 16 cores and RAM >= 32768 MB (gpu or not)
    macos / windows / linux
    python / web            desktop_gpu if gpu and RAM >= 8192 MB, else laptop
"""

import re

from django.conf import settings

CLASSIFIER_VERSION = "2026.11.1"

DEVICE_CLASSES = (
    "phone_flagship",
    "phone_midrange",
    "phone_low_end",
    "laptop",
    "desktop_gpu",
    "server_cpu",
    "server_gpu",
    "edge_npu",
    "edge_gpu",
    "edge_cpu",
)

FLAGSHIP_RAM_MB = 6144
FLAGSHIP_CORES = 8
MIDRANGE_RAM_MB = 3072
SERVER_CORES = 16
SERVER_RAM_MB = 32768
DESKTOP_GPU_RAM_MB = 8192

# Which runtime formats load on which catalog platform.
FORMAT_PLATFORMS = {
    "coreml": {"ios", "macos"},
    "tflite": {"android", "linux"},
    "onnx": {"windows", "linux", "web", "macos", "server", "android"},
    "gguf": {"macos", "linux", "windows", "android", "server"},
    "executorch": {"ios", "android"},
    "mlx": {"macos"},
}

# When the catalog has no latency for a class: (class to borrow from, multiplier), first match wins.
LATENCY_FALLBACK = {
    "phone_flagship": [("phone_midrange", 0.5)],
    "phone_midrange": [("phone_flagship", 2.0), ("phone_low_end", 0.5)],
    "phone_low_end": [("phone_midrange", 2.5), ("phone_flagship", 5.0)],
    "laptop": [("desktop_gpu", 2.5), ("server_cpu", 1.5)],
    "desktop_gpu": [("laptop", 0.5)],
    "server_cpu": [("laptop", 0.8)],
    "server_gpu": [("desktop_gpu", 0.8), ("laptop", 0.4)],
    "edge_npu": [("phone_midrange", 1.0)],
    "edge_gpu": [("laptop", 1.5)],
    "edge_cpu": [("phone_low_end", 1.0), ("laptop", 3.0)],
}

DEFAULT_WEIGHTS = {
    "quality": 0.5,
    "latency": 0.35,
    "size": 0.15,
    "latency_ref_ms": 100.0,
    "size_ref_mb": 500.0,
    "min_improvement": 0.01,
}


def weights():
    return {**DEFAULT_WEIGHTS, **getattr(settings, "CLASSIFIER_WEIGHTS", {})}


# --- inventory parsing -------------------------------------------------------------------------------
def _number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = re.match(r"\s*(\d+(?:\.\d+)?)", value)
        if match:
            return float(match.group(1))
    return None


def ram_mb(*, capabilities, hardware):
    """RAM in MB: hardware.ram (bytes, seed 002), else ram_mb / memory_mb / memory_gb fields."""
    hardware, capabilities = hardware or {}, capabilities or {}
    raw = _number(hardware.get("ram"))
    if raw:
        return int(raw // (1024 * 1024)) if raw > 1024 * 1024 else int(raw)
    for source in (hardware, capabilities):
        for key, factor in (("ram_mb", 1), ("memory_mb", 1), ("memory_gb", 1024), ("ram_gb", 1024)):
            value = _number(source.get(key))
            if value:
                return int(value * factor)
    return 0


def cpu_cores(*, capabilities, hardware):
    hardware, capabilities = hardware or {}, capabilities or {}
    for value in (hardware.get("cpu_cores"), capabilities.get("cpu_cores"), capabilities.get("cpu")):
        number = _number(value)
        if number:
            return int(number)
    return 0


def accelerators(*, capabilities, hardware):
    """{"npu", "gpu"} subset: from an `accelerators` list or truthy npu/gpu fields (not "none")."""
    found = set()
    for source in (capabilities or {}, hardware or {}):
        listed = source.get("accelerators")
        if isinstance(listed, list):
            found |= {str(a).lower() for a in listed}
        for key in ("npu", "gpu", "neural_engine"):
            value = source.get(key)
            if value and not (isinstance(value, str) and value.lower() in ("none", "false", "no", "0")):
                found.add("npu" if key == "neural_engine" else key)
    return found & {"npu", "gpu"}


def catalog_platforms(*, platform, os_name, device_class=None):
    """Catalog platforms (ios, android, web, macos, windows, linux, server) a device can run."""
    platform = (platform or "").lower()
    if platform in ("ios", "android", "web", "macos", "windows", "linux"):
        found = {platform}
    elif platform == "edge":
        found = {"linux"}
    else:  # python and anything unknown: from the OS name
        os_lower = (os_name or "").lower()
        if "mac" in os_lower or "darwin" in os_lower:
            found = {"macos"}
        elif "windows" in os_lower:
            found = {"windows"}
        else:
            found = {"linux"}
    if device_class in ("server_cpu", "server_gpu"):
        found.add("server")
    return found


# --- classification --------------------------------------------------------------------------------------
def classify(*, platform, capabilities, hardware, os_name):
    """The device class for one device's inventory (deterministic, see the module docstring)."""
    ram = ram_mb(capabilities=capabilities, hardware=hardware)
    cores = cpu_cores(capabilities=capabilities, hardware=hardware)
    accel = accelerators(capabilities=capabilities, hardware=hardware)
    platform = (platform or "").lower()
    if platform in ("ios", "android"):
        if ram >= FLAGSHIP_RAM_MB and ("npu" in accel or cores >= FLAGSHIP_CORES):
            return "phone_flagship"
        if ram >= MIDRANGE_RAM_MB:
            return "phone_midrange"
        return "phone_low_end"
    if platform == "edge":
        if "npu" in accel:
            return "edge_npu"
        if "gpu" in accel:
            return "edge_gpu"
        return "edge_cpu"
    # A big Linux box is a server; a big Mac or Windows machine stays a desktop.
    is_linux = catalog_platforms(platform=platform, os_name=os_name) == {"linux"}
    if platform in ("linux", "python") and is_linux and cores >= SERVER_CORES and ram >= SERVER_RAM_MB:
        return "server_gpu" if "gpu" in accel else "server_cpu"
    if "gpu" in accel and ram >= DESKTOP_GPU_RAM_MB:
        return "desktop_gpu"
    return "laptop"


def device_facts(*, platform, capabilities, hardware, os_name):
    """Everything scoring needs, derived once per device."""
    device_class = classify(platform=platform, capabilities=capabilities, hardware=hardware, os_name=os_name)
    return {
        "device_class": device_class,
        "platforms": catalog_platforms(platform=platform, os_name=os_name, device_class=device_class),
        "ram_mb": ram_mb(capabilities=capabilities, hardware=hardware),
        "accelerators": accelerators(capabilities=capabilities, hardware=hardware),
    }


def predicted_latency(*, device_class, latency_ms):
    latency_ms = latency_ms or {}
    if device_class in latency_ms:
        return float(latency_ms[device_class])
    for other, factor in LATENCY_FALLBACK.get(device_class, []):
        if other in latency_ms:
            return round(float(latency_ms[other]) * factor, 2)
    return None


def score_variant(*, device_class, platform, ram_mb, accelerators, variant):
    """{compatible, reasons[], predicted_latency_ms, score} for one variant on one device.

    `platform` is a catalog platform name or a set of them; `variant` any object with the
    ModelVariant fields (platforms, format, min_ram_mb, accelerators, quality_score, size_bytes,
    latency_ms). score = w_q·quality + w_l·ref/(ref + latency) + w_s·1/(1 + size_mb/size_ref),
    0 when incompatible; unknown latency contributes 0 to its term.
    """
    platforms = {platform} if isinstance(platform, str) else set(platform)
    device_accel = set(accelerators or ())
    reasons = []
    shared = platforms & set(variant.platforms or [])
    if not shared:
        reasons.append(f"platform: built for {', '.join(sorted(variant.platforms or [])) or 'no platform'}, "
                       f"device is {', '.join(sorted(platforms))}")
    elif not shared & FORMAT_PLATFORMS.get(variant.format, set()):
        reasons.append(f"format: {variant.format} is not supported on {', '.join(sorted(shared))}")
    if (ram_mb or 0) < (variant.min_ram_mb or 0):
        reasons.append(f"ram: needs {variant.min_ram_mb} MB, device has {ram_mb or 0} MB")
    required = variant.accelerators or "none"
    if required != "none" and required not in device_accel:
        reasons.append(f"accelerator: needs {required}")
    latency = predicted_latency(device_class=device_class, latency_ms=variant.latency_ms)
    compatible = not reasons
    w = weights()
    score = 0.0
    if compatible:
        latency_term = 0.0 if latency is None else w["latency_ref_ms"] / (w["latency_ref_ms"] + latency)
        size_mb = (variant.size_bytes or 0) / (1024 * 1024)
        size_term = 1.0 / (1.0 + size_mb / w["size_ref_mb"])
        score = w["quality"] * float(variant.quality_score or 0) + w["latency"] * latency_term + w["size"] * size_term
    return {
        "compatible": compatible,
        "reasons": reasons,
        "predicted_latency_ms": latency,
        "score": round(score, 4),
    }
