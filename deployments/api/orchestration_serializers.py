"""Input and output shapes of the orchestration endpoints (issue 7)."""

from rest_framework import serializers

from devices.api.serializers import DeviceRefSerializer
from fleet.api.serializers import StrictSerializer

from ..models import (
    CapabilityProfile,
    DeploymentStatus,
    Environment,
    Route,
    RoutingEvent,
    TrainingParticipation,
    TrainingRound,
    TrainingRoundOutcome,
    TrainingRoundStatus,
)
from ..routing import MAX_BATCH, WINDOWS

COVERAGE_STATUSES = ["healthy", "degraded", "unconfigured", "no_targets"]

# --- orchestrator -------------------------------------------------------------------------------------------


class EnvironmentInputSerializer(StrictSerializer):
    environment = serializers.ChoiceField(choices=Environment.choices, default=Environment.PRODUCTION)


class OptimizeInputSerializer(EnvironmentInputSerializer):
    stages = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=100), min_length=1, max_length=20, required=False
    )

    def validate_stages(self, stages):
        if stages[-1] != 100 or any(b <= a for a, b in zip(stages, stages[1:], strict=False)):
            raise serializers.ValidationError("Stages are percents in ascending order ending at 100.")
        return stages


class VariantRefSerializer(serializers.Serializer):
    variant_id = serializers.UUIDField()
    name = serializers.CharField()
    version = serializers.CharField()
    model = serializers.CharField()
    format = serializers.CharField()
    quantization = serializers.CharField()
    quality_score = serializers.FloatField()
    size_bytes = serializers.IntegerField()


class VariantComparisonSerializer(VariantRefSerializer):
    compatible_devices = serializers.IntegerField()
    coverage = serializers.FloatField()
    mean_score = serializers.FloatField(help_text="Mean score over the compatible devices.")
    fleet_score = serializers.FloatField(help_text="Mean score over all devices (incompatible ones count 0).")
    expected_latency_ms = serializers.FloatField(allow_null=True)


class RecommendedSerializer(VariantComparisonSerializer):
    reason = serializers.CharField()


class ClassCountSerializer(serializers.Serializer):
    device_class = serializers.CharField()
    devices = serializers.IntegerField()


class FleetSerializer(serializers.Serializer):
    devices = serializers.IntegerField()
    profiled = serializers.IntegerField(help_text="Devices with a stored capability profile (the rest were classified inline).")
    by_device_class = ClassCountSerializer(many=True)


class CapabilityBindingSerializer(serializers.Serializer):
    device_class = serializers.CharField()
    variant_id = serializers.UUIDField()
    devices = serializers.IntegerField()
    compatible_devices = serializers.IntegerField()


class VariantCountSerializer(serializers.Serializer):
    variant_id = serializers.UUIDField()
    devices = serializers.IntegerField()


class AssignmentsPlanSerializer(serializers.Serializer):
    targeting = serializers.DictField()
    total = serializers.IntegerField()
    by_variant = VariantCountSerializer(many=True)


class UncoveredSerializer(serializers.Serializer):
    devices = serializers.IntegerField()
    by_device_class = ClassCountSerializer(many=True)


class PreviewSerializer(serializers.Serializer):
    app = serializers.CharField()
    capability = serializers.CharField()
    environment = serializers.CharField()
    recommended = RecommendedSerializer(allow_null=True)
    fleet = FleetSerializer()
    variants = VariantComparisonSerializer(many=True)
    bindings = CapabilityBindingSerializer(many=True)
    assignments = AssignmentsPlanSerializer()
    uncovered = UncoveredSerializer()


class OrchestratedDeploymentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=DeploymentStatus.choices)
    environment = serializers.CharField()
    variant_id = serializers.UUIDField()
    bindings = serializers.DictField(child=serializers.UUIDField(), help_text="{device class: variant id}")
    strategy = serializers.DictField()
    current_stage = serializers.IntegerField()
    stage_percent = serializers.IntegerField()
    targeted = serializers.IntegerField(source="assignments.count")


class SlotRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    capability = serializers.CharField(source="capability.key")
    variant_id = serializers.UUIDField(allow_null=True)
    bindings = serializers.DictField(child=serializers.CharField())


class EnableSerializer(serializers.Serializer):
    created = serializers.BooleanField(help_text="False when the environment was already enabled (nothing changed).")
    deployment = OrchestratedDeploymentSerializer()
    slot = SlotRefSerializer(allow_null=True)
    plan = PreviewSerializer(allow_null=True)


class ImprovementSerializer(serializers.Serializer):
    score = serializers.FloatField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True, help_text="Positive: the recommended variant is faster.")
    quality = serializers.FloatField(allow_null=True)


class CurrentVariantSerializer(VariantRefSerializer):
    compatible_devices = serializers.IntegerField(required=False)
    fleet_score = serializers.FloatField(required=False)
    expected_latency_ms = serializers.FloatField(required=False, allow_null=True)


class CheckOptimizationSerializer(serializers.Serializer):
    current = CurrentVariantSerializer(allow_null=True)
    recommended = VariantComparisonSerializer(allow_null=True)
    better = serializers.BooleanField()
    expected_improvement = ImprovementSerializer()
    devices_affected = serializers.IntegerField()
    deployment_id = serializers.UUIDField(allow_null=True)


class OptimizeSerializer(serializers.Serializer):
    deployment = OrchestratedDeploymentSerializer()
    check = CheckOptimizationSerializer()


class SlotHealthSerializer(serializers.Serializer):
    capability = serializers.CharField()
    variant_id = serializers.UUIDField(allow_null=True)
    target_devices = serializers.IntegerField()
    active_devices = serializers.IntegerField()
    coverage = serializers.FloatField()
    status = serializers.ChoiceField(choices=COVERAGE_STATUSES)


class AppHealthSerializer(serializers.Serializer):
    app = serializers.CharField()
    status = serializers.ChoiceField(choices=COVERAGE_STATUSES)
    slots = SlotHealthSerializer(many=True)


# --- capability profiles ---------------------------------------------------------------------------------


class VariantScoreSerializer(serializers.Serializer):
    capability = serializers.CharField()
    compatible = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField())
    predicted_latency_ms = serializers.FloatField(allow_null=True)
    score = serializers.FloatField()


class CapabilityProfileSerializer(serializers.Serializer):
    device = DeviceRefSerializer()
    device_class = serializers.CharField()
    scores = serializers.DictField(child=VariantScoreSerializer(), help_text="variant id -> score")
    classifier_version = serializers.CharField()
    computed_at = serializers.DateTimeField()

    class Meta:
        model = CapabilityProfile


class ProfileFilterSerializer(serializers.Serializer):
    device_class = serializers.CharField(required=False, max_length=32)
    variant = serializers.UUIDField(required=False)
    compatible = serializers.BooleanField(required=False, allow_null=True, default=None)

    def validate(self, attrs):
        if attrs.get("compatible") is not None and not attrs.get("variant"):
            raise serializers.ValidationError({"compatible": ["compatible filters on a variant: give variant too."]})
        return attrs


# --- routing ---------------------------------------------------------------------------------------------------


class RoutingEventInputSerializer(serializers.Serializer):
    """One event (validated per item by the service; documented here for the schema)."""

    app = serializers.CharField(help_text="App slug.")
    capability = serializers.CharField()
    device_id = serializers.CharField(required=False, help_text="Device identifier or UUID; a device token defaults to itself.")
    route = serializers.ChoiceField(choices=Route.choices)
    variant_id = serializers.UUIDField(required=False, allow_null=True)
    latency_ms = serializers.FloatField(required=False, allow_null=True, min_value=0)
    success = serializers.BooleanField(default=True)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200)
    ts = serializers.DateTimeField(required=False, help_text="When it happened (default: now).")


class RoutingBatchSerializer(StrictSerializer):
    events = serializers.ListField(child=serializers.DictField(), max_length=MAX_BATCH, allow_empty=False,
                                   help_text=f"Up to {MAX_BATCH} events (RoutingEventInput objects).")


# The request body as documented: the batch object, or its events as a bare array (both accepted).
_EVENTS_ARRAY = {"type": "array", "items": {"type": "object", "additionalProperties": {}}, "minItems": 1,
                 "maxItems": MAX_BATCH}
ROUTING_BATCH_SCHEMA = {
    "oneOf": [
        {"type": "object", "properties": {"events": {**_EVENTS_ARRAY, "description": f"Up to {MAX_BATCH} events "
                                                      "(RoutingEventInput objects)."}},
         "required": ["events"], "additionalProperties": False},
        {**_EVENTS_ARRAY, "description": "The events alone."},
    ]
}


class ItemErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class RoutingIngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    errors = ItemErrorSerializer(many=True)


class RoutingDecisionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    app = serializers.CharField(source="app.slug")
    capability = serializers.CharField(source="capability.key")
    device = serializers.UUIDField(source="device_id", allow_null=True)
    device_id = serializers.CharField(source="device_identifier")
    route = serializers.ChoiceField(choices=Route.choices)
    variant_id = serializers.UUIDField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True)
    success = serializers.BooleanField()
    reason = serializers.CharField()
    ts = serializers.DateTimeField()
    received_at = serializers.DateTimeField()

    class Meta:
        model = RoutingEvent


class StatsWindowSerializer(serializers.Serializer):
    window = serializers.ChoiceField(choices=list(WINDOWS), default="24h")


class RouteStatsSerializer(serializers.Serializer):
    route = serializers.CharField()
    count = serializers.IntegerField()
    errors = serializers.IntegerField()
    error_rate = serializers.FloatField()
    p50_latency_ms = serializers.FloatField(allow_null=True)
    p95_latency_ms = serializers.FloatField(allow_null=True)


class VariantStatsSerializer(serializers.Serializer):
    variant_id = serializers.UUIDField(allow_null=True)
    count = serializers.IntegerField()
    errors = serializers.IntegerField()
    error_rate = serializers.FloatField()
    p50_latency_ms = serializers.FloatField(allow_null=True)
    p95_latency_ms = serializers.FloatField(allow_null=True)


class RoutingStatsSerializer(serializers.Serializer):
    window = serializers.CharField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    total = serializers.IntegerField()
    local = serializers.IntegerField()
    cloud = serializers.IntegerField()
    local_share = serializers.FloatField()
    errors = serializers.IntegerField()
    error_rate = serializers.FloatField()
    by_route = RouteStatsSerializer(many=True)
    by_variant = VariantStatsSerializer(many=True)


# --- training rounds ---------------------------------------------------------------------------------------------


class TrainingRoundCreateSerializer(StrictSerializer):
    app = serializers.CharField(help_text="App slug.")
    capability = serializers.CharField()
    target_selector = serializers.JSONField(required=False, help_text="Label selector narrowing the app's devices.")
    min_participants = serializers.IntegerField(min_value=1, max_value=1_000_000, default=1)
    deadline = serializers.DateTimeField(required=False, allow_null=True)


class TrainingRoundSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    app = serializers.CharField(source="app.slug")
    capability = serializers.CharField(source="capability.key")
    number = serializers.IntegerField()
    status = serializers.ChoiceField(choices=TrainingRoundStatus.choices)
    target_selector = serializers.DictField()
    min_participants = serializers.IntegerField()
    deadline = serializers.DateTimeField(allow_null=True)
    participant_count = serializers.IntegerField()
    outcome = serializers.ChoiceField(
        choices=TrainingRoundOutcome.choices, allow_null=True,
        help_text="Null while open; on close, completed when participant_count >= min_participants, "
        "else insufficient_participants.",
    )
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        model = TrainingRound


class ParticipationInputSerializer(StrictSerializer):
    device_id = serializers.CharField(required=False, max_length=255,
                                      help_text="Device identifier or UUID (a device token reports for itself).")
    num_samples = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    metrics = serializers.DictField(required=False, default=dict)
    update = serializers.DictField(required=False, default=dict, help_text="Update metadata: uri, size_bytes, sha256, …")


class ParticipationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    round_id = serializers.UUIDField()
    device = DeviceRefSerializer()
    num_samples = serializers.IntegerField()
    metrics = serializers.DictField()
    update = serializers.DictField()
    submitted_at = serializers.DateTimeField()

    class Meta:
        model = TrainingParticipation


class TrainingRoundFilterSerializer(serializers.Serializer):
    app = serializers.CharField(required=False)
    capability = serializers.CharField(required=False)
    status = serializers.ChoiceField(choices=TrainingRoundStatus.choices, required=False)
