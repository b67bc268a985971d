from rest_framework import serializers

from devices.api.serializers import DeviceRefSerializer, InventorySerializer
from fleet.api.serializers import StrictSerializer

from ..models import (
    DEFAULT_STAGES,
    AssignmentStatus,
    CommandStatus,
    CommandType,
    Deployment,
    DeploymentStatus,
    Environment,
    StrategyType,
)

# --- input ------------------------------------------------------------------------------------------


class HealthGatesSerializer(StrictSerializer):
    max_failure_rate = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    min_reporting_devices = serializers.IntegerField(min_value=0, max_value=1_000_000, default=1)
    # Issue 7: roll back when routing events of the new variant fail too often (see orchestration.md).
    max_routing_error_rate = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    min_routing_events = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False)


class StrategySerializer(StrictSerializer):
    type = serializers.ChoiceField(choices=StrategyType.choices, default=StrategyType.STAGED)
    stages = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=100), min_length=1, max_length=20, default=DEFAULT_STAGES
    )
    auto_promote = serializers.BooleanField(default=False)
    min_stage_duration_s = serializers.IntegerField(min_value=0, max_value=30 * 86400, default=0)
    health_gates = HealthGatesSerializer(default=dict)

    def validate_stages(self, stages):
        if stages[-1] != 100 or any(b <= a for a, b in zip(stages, stages[1:], strict=False)):
            raise serializers.ValidationError("Stages are percents in ascending order ending at 100.")
        return stages


class TargetingSerializer(StrictSerializer):
    app_target_ids = serializers.ListField(child=serializers.UUIDField(), max_length=1000, default=list)
    device_group_ids = serializers.ListField(child=serializers.UUIDField(), max_length=1000, default=list)
    selector = serializers.JSONField(required=False, allow_null=True, help_text="Label selector (see device groups).")
    device_ids = serializers.ListField(child=serializers.UUIDField(), max_length=10_000, default=list)

    def validate_selector(self, selector):
        from devices.label_selector import validate_selector
        from devices.models import Platform

        if selector is None:
            return None
        return validate_selector(selector, field="targeting.selector", platforms=Platform.values)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        return {
            "app_target_ids": [str(i) for i in value["app_target_ids"]],
            "device_group_ids": [str(i) for i in value["device_group_ids"]],
            "selector": value.get("selector"),
            "device_ids": [str(i) for i in value["device_ids"]],
        }


class DeploymentCreateSerializer(StrictSerializer):
    app = serializers.SlugField(required=False, allow_null=True, help_text="App slug (optional).")
    capability = serializers.SlugField(help_text="Capability key, e.g. vision.")
    variant_id = serializers.UUIDField()
    environment = serializers.ChoiceField(choices=Environment.choices, default=Environment.PRODUCTION)
    targeting = TargetingSerializer()
    strategy = StrategySerializer(default=dict)
    bindings = serializers.DictField(
        child=serializers.UUIDField(), required=False,
        help_text="{device class or platform: variant id}: devices of that class (else platform) get that "
        "variant. Omitted: the app slot's bindings for the capability.",
    )


class ActionSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class StrictInventorySerializer(StrictSerializer, InventorySerializer):
    """Inventory reported in observed state or sync: unknown fields are named, not ignored."""


class ObservedModelSerializer(StrictSerializer):
    variant_id = serializers.UUIDField()
    version = serializers.CharField(max_length=50, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=AssignmentStatus.choices)
    error = serializers.CharField(max_length=1000, required=False, allow_blank=True, allow_null=True)


class ObservedStateSerializer(StrictSerializer):
    revision = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    models = ObservedModelSerializer(many=True, max_length=100, default=list)
    inventory = StrictInventorySerializer(required=False)


class SyncSerializer(StrictSerializer):
    known_revision = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    observed_state = ObservedStateSerializer(required=False, allow_null=True)
    inventory = StrictInventorySerializer(required=False)
    acked_directives = serializers.ListField(child=serializers.UUIDField(), max_length=1000, default=list)


class CommandCreateSerializer(StrictSerializer):
    type = serializers.ChoiceField(choices=CommandType.choices)
    payload = serializers.JSONField(required=False, default=dict)
    expires_in_s = serializers.IntegerField(min_value=1, max_value=7 * 86400, default=3600)

    def validate_payload(self, payload):
        if not isinstance(payload, dict):
            raise serializers.ValidationError("The payload is a JSON object.")
        if len(str(payload)) > 16_384:
            raise serializers.ValidationError("The payload is at most 16 KB.")
        return payload


# --- output ---------------------------------------------------------------------------------------------


class VariantBriefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    version = serializers.CharField()
    format = serializers.CharField()


class DeploymentSerializer(serializers.ModelSerializer):
    app = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    capability = serializers.SlugRelatedField(slug_field="key", read_only=True)
    variant = VariantBriefSerializer(read_only=True)
    stage_percent = serializers.IntegerField(read_only=True)
    previous_deployment_id = serializers.UUIDField(read_only=True, allow_null=True)
    status = serializers.ChoiceField(choices=DeploymentStatus.choices, read_only=True)
    bindings = serializers.DictField(child=serializers.UUIDField(), read_only=True,
                                     help_text="{device class or platform: variant id}")

    class Meta:
        model = Deployment
        fields = [
            "id", "app", "capability", "variant", "bindings", "environment", "targeting", "strategy", "status",
            "status_reason", "current_stage", "stage_percent", "previous_deployment_id", "created_by",
            "created_at", "started_at", "completed_at",
        ]
        read_only_fields = fields


class ProgressSerializer(serializers.Serializer):
    targeted = serializers.IntegerField()
    in_rollout = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    stage = serializers.IntegerField()
    stage_percent = serializers.IntegerField()
    reporting = serializers.IntegerField()
    failure_rate = serializers.FloatField()


class DeploymentDetailSerializer(DeploymentSerializer):
    progress = ProgressSerializer(read_only=True)

    class Meta(DeploymentSerializer.Meta):
        fields = [*DeploymentSerializer.Meta.fields, "progress"]
        read_only_fields = fields


class AssignmentSerializer(serializers.Serializer):
    device = DeviceRefSerializer()
    source = serializers.CharField()
    bucket = serializers.IntegerField()
    in_rollout = serializers.BooleanField()
    status = serializers.ChoiceField(choices=AssignmentStatus.choices)
    error = serializers.CharField()
    updated_at = serializers.DateTimeField()


class DesiredModelSerializer(serializers.Serializer):
    capability = serializers.CharField()
    model = serializers.CharField()
    variant_id = serializers.UUIDField()
    version = serializers.CharField()
    format = serializers.CharField()
    artifact_url = serializers.CharField()
    sha256 = serializers.CharField()
    size_bytes = serializers.IntegerField()
    deployment_id = serializers.UUIDField()


class BindingSerializer(serializers.Serializer):
    app = serializers.CharField(allow_null=True)
    deployments = serializers.ListField(child=serializers.UUIDField())


class PolicySerializer(serializers.Serializer):
    serving = serializers.DictField(child=serializers.DictField())
    inference = serializers.DictField(allow_null=True)
    heartbeat_interval_s = serializers.IntegerField()


class DesiredStateSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    revision = serializers.IntegerField()
    binding = BindingSerializer()
    models = DesiredModelSerializer(many=True)
    policy = PolicySerializer()
    generated_at = serializers.DateTimeField()


class DriftItemSerializer(serializers.Serializer):
    capability = serializers.CharField()
    desired = serializers.UUIDField()
    observed = serializers.UUIDField(allow_null=True)


class DriftSerializer(serializers.Serializer):
    drift = serializers.BooleanField()
    drifted = DriftItemSerializer(many=True)


class ObservedStateResultSerializer(DriftSerializer):
    revision = serializers.IntegerField()


class DirectiveSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=CommandType.choices)
    payload = serializers.DictField()
    expires_at = serializers.DateTimeField()


class SyncResultSerializer(serializers.Serializer):
    unchanged = serializers.BooleanField()
    revision = serializers.IntegerField()
    desired_state = DesiredStateSerializer(required=False)
    directives = DirectiveSerializer(many=True)
    drift = DriftSerializer()
    next_sync_in_s = serializers.IntegerField()
    pending_round_id = serializers.UUIDField(allow_null=True, help_text="An open training round awaiting this device.")
    message = serializers.CharField(allow_null=True)


class CommandSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=CommandType.choices)
    payload = serializers.DictField()
    status = serializers.SerializerMethodField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    acked_at = serializers.DateTimeField(allow_null=True)

    def get_status(self, command) -> str:
        from django.utils import timezone

        # A command past its expiry reads as expired even before the sweep marks it.
        if command.status in (CommandStatus.QUEUED, CommandStatus.DELIVERED) and command.expires_at <= timezone.now():
            return CommandStatus.EXPIRED
        return command.status
