import re

from rest_framework import serializers

from apps_catalog.models import (
    Accelerator,
    App,
    AppKey,
    AppKeyKind,
    AppTarget,
    CapabilitySlot,
    CatalogModel,
    InferenceConfig,
    ModelCapability,
    ModelFormat,
    ModelVariant,
    Platform,
    Quantization,
    Routing,
    Via,
)
from apps_catalog.services import RESERVED_SLUGS
from fleet.api.serializers import StrictSerializer


def value_choices(choices):
    """The same values labelled by themselves: a list of X (platforms, fallback_order) or a second
    field over the same set (default_routing) gets its own enum component in the OpenAPI schema
    instead of one choice set published under two names."""
    return [(value, value) for value in choices.values]


DEVICE_CLASS = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,49}$")


# --- catalog: output -------------------------------------------------------------------------------


class CapabilitySerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelCapability
        fields = ["key", "name", "description"]
        read_only_fields = fields


class CatalogModelSerializer(serializers.ModelSerializer):
    capability = serializers.CharField(source="capability.key")
    public = serializers.BooleanField(source="is_public", help_text="Public catalog entry (read-only).")

    class Meta:
        model = CatalogModel
        fields = ["id", "name", "capability", "description", "public", "created_at", "updated_at"]
        read_only_fields = fields


class VariantRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVariant
        fields = ["id", "name", "version", "format", "quantization"]
        read_only_fields = fields


class ModelVariantSerializer(serializers.ModelSerializer):
    model_id = serializers.UUIDField()
    capability = serializers.CharField(source="model.capability.key")
    platforms = serializers.ListField(child=serializers.ChoiceField(choices=value_choices(Platform)))
    latency_ms = serializers.DictField(child=serializers.IntegerField(), help_text="Latency per device class.")
    public = serializers.SerializerMethodField()

    class Meta:
        model = ModelVariant
        fields = [
            "id",
            "model_id",
            "capability",
            "name",
            "version",
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
            "public",
            "created_at",
        ]
        read_only_fields = fields

    def get_public(self, variant) -> bool:
        return variant.organization_id is None


# --- catalog: input --------------------------------------------------------------------------------


class CatalogModelCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    capability = serializers.SlugRelatedField(slug_field="key", queryset=ModelCapability.objects.all())
    description = serializers.CharField(required=False, allow_blank=True, default="")


class CatalogModelUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    capability = serializers.SlugRelatedField(slug_field="key", queryset=ModelCapability.objects.all(), required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class ModelVariantCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    version = serializers.CharField(max_length=50)
    format = serializers.ChoiceField(choices=ModelFormat.choices)
    quantization = serializers.ChoiceField(choices=Quantization.choices)
    platforms = serializers.ListField(child=serializers.ChoiceField(choices=value_choices(Platform)), min_length=1)
    min_ram_mb = serializers.IntegerField(min_value=0, default=0)
    accelerators = serializers.ChoiceField(choices=Accelerator.choices, default=Accelerator.NONE)
    size_bytes = serializers.IntegerField(min_value=0, default=0)
    artifact_url = serializers.URLField(max_length=500, required=False, allow_blank=True, default="")
    sha256 = serializers.RegexField(r"^[0-9a-f]{64}$", required=False, allow_blank=True, default="")
    quality_score = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)
    latency_ms = serializers.DictField(child=serializers.IntegerField(min_value=0), required=False, default=dict)

    def validate_platforms(self, value):
        if len(set(value)) != len(value):
            raise serializers.ValidationError("Duplicate platform.")
        return value

    def validate_latency_ms(self, value):
        for device_class in value:
            if not DEVICE_CLASS.match(device_class):
                raise serializers.ValidationError(f"{device_class!r} is not a device class (a-z, 0-9, _ and -).")
        return value


# --- apps: output ----------------------------------------------------------------------------------


class AppTargetSerializer(serializers.ModelSerializer):
    class Meta:
        model = AppTarget
        fields = ["id", "platform", "identifier", "created_at"]
        read_only_fields = fields


class ServingPolicySerializer(StrictSerializer):
    routing = serializers.ChoiceField(choices=Routing.choices)
    fallback = serializers.BooleanField(default=True)
    max_latency_ms = serializers.IntegerField(min_value=1, max_value=600000, allow_null=True, default=None)
    min_quality = serializers.FloatField(min_value=0.0, max_value=1.0, allow_null=True, default=None)

    def validate(self, attrs):
        if attrs.get("fallback") and attrs["routing"] in (Routing.LOCAL_ONLY, Routing.CLOUD_ONLY, Routing.PRIVATE):
            raise serializers.ValidationError({"fallback": [f"Must be false with routing {attrs['routing']}."]})
        return attrs


class CapabilitySlotSerializer(serializers.ModelSerializer):
    capability = serializers.CharField(source="capability.key")
    variant = VariantRefSerializer(allow_null=True)
    serving_policy = ServingPolicySerializer()
    bindings = serializers.DictField(child=serializers.UUIDField(), help_text="platform -> variant id")

    class Meta:
        model = CapabilitySlot
        fields = ["id", "capability", "variant", "serving_policy", "bindings", "created_at", "updated_at"]
        read_only_fields = fields


class AppSerializer(serializers.ModelSerializer):
    targets = AppTargetSerializer(many=True)
    capabilities = CapabilitySlotSerializer(source="slots", many=True)

    class Meta:
        model = App
        fields = ["id", "slug", "name", "description", "archived_at", "created_at", "updated_at", "targets", "capabilities"]
        read_only_fields = fields


class AppKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = AppKey
        fields = ["id", "kind", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class AppKeyCreatedSerializer(AppKeySerializer):
    key = serializers.CharField(help_text="The secret. Shown once: store it now.")

    class Meta(AppKeySerializer.Meta):
        fields = [*AppKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class BootstrapResultSerializer(serializers.Serializer):
    app = AppSerializer()
    target = AppTargetSerializer()
    app_key = AppKeyCreatedSerializer(help_text="Server-side secret key (shown once).")
    publishable_key = AppKeyCreatedSerializer(
        allow_null=True, help_text="Publishable key for ios / android / web targets (shown once), else null."
    )


class InferenceConfigSerializer(serializers.ModelSerializer):
    default_routing = serializers.ChoiceField(choices=value_choices(Routing))
    fallback_order = serializers.ListField(child=serializers.ChoiceField(choices=value_choices(Via)))

    class Meta:
        model = InferenceConfig
        fields = ["cloud_endpoint_url", "default_routing", "timeout_ms", "max_retries", "fallback_order", "updated_at"]
        read_only_fields = fields


class FirstRequestSerializer(serializers.Serializer):
    received = serializers.BooleanField()
    first_at = serializers.DateTimeField(allow_null=True)
    via = serializers.ChoiceField(choices=Via.choices, allow_null=True)


# --- apps: input -----------------------------------------------------------------------------------


def _validate_slug(value):
    if value in RESERVED_SLUGS:
        raise serializers.ValidationError(f"{value!r} is reserved.")
    return value


class AppCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=63, required=False, help_text="Derived from the name when omitted.")
    description = serializers.CharField(required=False, allow_blank=True, default="")

    def validate_slug(self, value):
        return _validate_slug(value)


class AppUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class AppTargetCreateSerializer(StrictSerializer):
    platform = serializers.ChoiceField(choices=Platform.choices)
    identifier = serializers.CharField(max_length=255, help_text="Bundle id, package name or origin.")


class AppBootstrapSerializer(AppTargetCreateSerializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=63, required=False)

    def validate_slug(self, value):
        return _validate_slug(value)


class AppKeyCreateSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=AppKeyKind.choices)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class CapabilitySlotPutSerializer(StrictSerializer):
    variant_id = serializers.UUIDField(allow_null=True, help_text="The active catalog variant (null: none yet).")
    serving_policy = ServingPolicySerializer()
    bindings = serializers.DictField(
        child=serializers.UUIDField(), required=False, default=dict, help_text="platform -> variant id overrides"
    )

    def validate_bindings(self, value):
        unknown = sorted(set(value) - set(Platform.values))
        if unknown:
            raise serializers.ValidationError(f"Unknown platform(s): {', '.join(unknown)}.")
        return value


class InferenceConfigPutSerializer(StrictSerializer):
    cloud_endpoint_url = serializers.URLField(max_length=500, required=False, allow_blank=True, default="")
    default_routing = serializers.ChoiceField(choices=value_choices(Routing))
    timeout_ms = serializers.IntegerField(min_value=100, max_value=120000, default=30000)
    max_retries = serializers.IntegerField(min_value=0, max_value=10, default=2)
    fallback_order = serializers.ListField(
        child=serializers.ChoiceField(choices=value_choices(Via)), max_length=2, required=False, default=list
    )

    def validate_cloud_endpoint_url(self, value):
        if value and not value.startswith("https://"):
            raise serializers.ValidationError("Must be an https:// URL.")
        return value

    def validate_fallback_order(self, value):
        if len(set(value)) != len(value):
            raise serializers.ValidationError("Duplicate entry.")
        return value

    def validate(self, attrs):
        needs_cloud = attrs["default_routing"] in (Routing.CLOUD_FIRST, Routing.CLOUD_ONLY) or (
            Via.CLOUD in attrs.get("fallback_order", [])
        )
        if needs_cloud and not attrs.get("cloud_endpoint_url"):
            raise serializers.ValidationError({"cloud_endpoint_url": ["Required when requests may go to the cloud."]})
        routing, order = attrs["default_routing"], attrs.get("fallback_order", [])
        if routing in (Routing.LOCAL_ONLY, Routing.PRIVATE) and Via.CLOUD in order:
            raise serializers.ValidationError({"fallback_order": [f"{routing} routing cannot fall back to the cloud."]})
        if routing == Routing.CLOUD_ONLY and Via.LOCAL in order:
            raise serializers.ValidationError({"fallback_order": ["cloud_only routing cannot fall back to local."]})
        return attrs
