"""Model catalog (capabilities, models, variants) and apps (targets, keys, capability slots, inference config).

ModelCapability is a global list. CatalogModel / ModelVariant rows with a null org_id are the public
catalog (readable by every organization, writable by none: migration 0002 installs their policies);
every other table is organization-scoped.
"""

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from fleet.tenancy.models import Organization, OrgScopedModel


class Platform(models.TextChoices):
    """Where a device runs, and what an app target or a model variant is built for (one list)."""

    PYTHON = "python"
    IOS = "ios"
    ANDROID = "android"
    EDGE = "edge"
    WEB = "web"
    MACOS = "macos"
    WINDOWS = "windows"
    LINUX = "linux"
    SERVER = "server"


# Targets on these platforms ship the key inside the app: they get a publishable key.
PUBLISHABLE_PLATFORMS = (Platform.IOS, Platform.ANDROID, Platform.WEB)


class ModelFormat(models.TextChoices):
    COREML = "coreml"
    TFLITE = "tflite"
    ONNX = "onnx"
    GGUF = "gguf"
    EXECUTORCH = "executorch"
    MLX = "mlx"


class Quantization(models.TextChoices):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    INT4 = "int4"


class Accelerator(models.TextChoices):
    NPU = "npu"
    GPU = "gpu"
    NONE = "none"


class Routing(models.TextChoices):
    LOCAL_FIRST = "local_first"
    CLOUD_FIRST = "cloud_first"
    LOCAL_ONLY = "local_only"
    CLOUD_ONLY = "cloud_only"
    PERFORMANCE_FIRST = "performance_first"
    PRIVATE = "private"


class Via(models.TextChoices):
    CLOUD = "cloud"
    LOCAL = "local"


# --- catalog ---------------------------------------------------------------------------------------


class ModelCapability(models.Model):
    """What a model does (vision, chat, …). Global: no organization."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["key"]
        verbose_name_plural = "model capabilities"

    def __str__(self):
        return self.key


class CatalogModel(models.Model):
    """A model in the catalog: public (organization is null) or private to one organization."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.CASCADE, db_column="org_id", related_name="+"
    )
    name = models.CharField(max_length=200)
    capability = models.ForeignKey(ModelCapability, on_delete=models.PROTECT, related_name="models")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "model"
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="catalog_model_unique_org_name"),
            models.UniqueConstraint(
                fields=["name"], condition=Q(organization__isnull=True), name="catalog_model_unique_public_name"
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def is_public(self):
        return self.organization_id is None


class ModelVariant(models.Model):
    """One build of a model (format × quantization); carries its model's org_id for row-level security."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.CASCADE, db_column="org_id", related_name="+"
    )
    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=200)
    version = models.CharField(max_length=50)
    format = models.CharField(max_length=16, choices=ModelFormat.choices)
    quantization = models.CharField(max_length=8, choices=Quantization.choices)
    platforms = models.JSONField(default=list, blank=True)
    min_ram_mb = models.PositiveIntegerField(default=0)
    accelerators = models.CharField(
        max_length=8, choices=Accelerator.choices, default=Accelerator.NONE, help_text="Required accelerator."
    )
    size_bytes = models.BigIntegerField(default=0)
    artifact_url = models.URLField(max_length=500, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    quality_score = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    latency_ms = models.JSONField(default=dict, blank=True, help_text="Latency per device class.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model__name", "name", "version", "id"]
        constraints = [
            models.UniqueConstraint(fields=["model", "name", "version"], name="model_variant_unique_name_version"),
        ]

    def __str__(self):
        return f"{self.name}@{self.version}"


# --- apps ------------------------------------------------------------------------------------------


class App(OrgScopedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=63)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug", "id"]
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="app_unique_org_slug")]

    def __str__(self):
        return self.slug

    @property
    def is_archived(self):
        return self.archived_at is not None


class AppTarget(OrgScopedModel):
    """Binds an app to a (platform, identifier) such as ("ios", "com.example.app")."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="targets")
    platform = models.CharField(max_length=16, choices=Platform.choices)
    identifier = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "platform", "identifier"], name="app_target_unique_org_platform_identifier"
            )
        ]

    def __str__(self):
        return f"{self.platform}:{self.identifier}"


class AppKeyKind(models.TextChoices):
    SECRET = "secret"
    PUBLISHABLE = "publishable"


class AppKey(OrgScopedModel):
    """A server-side secret app key (`ak_live_…`) or a publishable one (`pk_live_…`); stored hashed."""

    PREFIXES = {AppKeyKind.SECRET: "ak_live_", AppKeyKind.PUBLISHABLE: "pk_live_"}

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="keys")
    kind = models.CharField(max_length=16, choices=AppKeyKind.choices)
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=32, editable=False)
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "id"]
        verbose_name = "app key"

    def __str__(self):
        return f"{self.kind} {self.prefix}…"


class CapabilitySlot(OrgScopedModel):
    """The variant an app uses for one capability, how it is served, and per-platform overrides."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="slots")
    capability = models.ForeignKey(ModelCapability, on_delete=models.PROTECT, related_name="+")
    variant = models.ForeignKey(ModelVariant, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    serving_policy = models.JSONField(default=dict)
    bindings = models.JSONField(default=dict, blank=True, help_text="platform -> variant id")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["capability__key", "id"]
        constraints = [models.UniqueConstraint(fields=["app", "capability"], name="capability_slot_unique_app")]

    def __str__(self):
        return f"{self.app_id}:{self.capability_id}"


class InferenceConfig(OrgScopedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.OneToOneField(App, on_delete=models.CASCADE, related_name="inference_config")
    cloud_endpoint_url = models.URLField(max_length=500, blank=True)
    default_routing = models.CharField(max_length=24, choices=Routing.choices, default=Routing.LOCAL_FIRST)
    timeout_ms = models.PositiveIntegerField(default=30000)
    max_retries = models.PositiveSmallIntegerField(default=2)
    fallback_order = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"inference config of {self.app_id}"


class InferenceRequestLog(OrgScopedModel):
    """Inference requests seen for an app (cloud or on-device), written by routing telemetry.

    The orchestrator issue feeds this table; until then it backs GET /apps/{slug}/first-request.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    via = models.CharField(max_length=8, choices=Via.choices)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["received_at", "id"]
        indexes = [models.Index(fields=["organization", "app", "received_at"], name="inference_log_app_time")]
