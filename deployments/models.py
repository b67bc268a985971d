import uuid

from django.db import models

from apps_catalog.models import App, ModelCapability, ModelVariant
from devices.models import Device
from fleet.tenancy.models import Organization, OrgScopedModel, organization_key

DEFAULT_STAGES = [10, 50, 100]


class Environment(models.TextChoices):
    STAGING = "staging"
    PRODUCTION = "production"


class DeploymentStatus(models.TextChoices):
    DRAFT = "draft"
    ROLLING_OUT = "rolling_out"
    PAUSED = "paused"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"


# Deployments whose assignments may win for a device (paused ones are frozen, not withdrawn).
LIVE_STATUSES = (DeploymentStatus.ROLLING_OUT, DeploymentStatus.PAUSED, DeploymentStatus.COMPLETED)


class StrategyType(models.TextChoices):
    ALL_AT_ONCE = "all_at_once"
    STAGED = "staged"


class Deployment(OrgScopedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, null=True, blank=True, on_delete=models.PROTECT, related_name="deployments")
    capability = models.ForeignKey(ModelCapability, on_delete=models.PROTECT, related_name="+")
    variant = models.ForeignKey(ModelVariant, on_delete=models.PROTECT, related_name="+")
    environment = models.CharField(max_length=16, choices=Environment.choices, default=Environment.PRODUCTION)
    # {"app_target_ids": [...], "device_group_ids": [...], "selector": {...}, "device_ids": [...]}
    targeting = models.JSONField(default=dict)
    # {"type", "stages", "auto_promote", "min_stage_duration_s", "health_gates": {...}}
    strategy = models.JSONField(default=dict)
    # {device class or platform: variant id}: devices of that class (or, failing that, platform) get
    # the bound variant instead of `variant` (issue 7: the orchestrator's per-class choice).
    bindings = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=DeploymentStatus.choices, default=DeploymentStatus.DRAFT)
    current_stage = models.PositiveSmallIntegerField(default=0)
    stage_started_at = models.DateTimeField(null=True, blank=True)
    status_reason = models.CharField(max_length=500, blank=True, default="")
    previous_deployment = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "status"], name="deployment_org_status"),
            models.Index(fields=["organization", "capability", "environment"], name="deployment_org_capability"),
        ]

    def __str__(self):
        return f"{self.capability_id} → {self.variant_id} ({self.status})"

    @property
    def stages(self):
        if self.strategy.get("type") == StrategyType.ALL_AT_ONCE:
            return [100]
        return self.strategy.get("stages") or DEFAULT_STAGES

    @property
    def stage_percent(self):
        """Share of targeted devices (by stable bucket) in the rollout now."""
        if self.status == DeploymentStatus.DRAFT:
            return 0
        return self.stages[min(self.current_stage, len(self.stages) - 1)]


class AssignmentSource(models.TextChoices):
    DEVICE = "device"
    GROUP = "group"
    SELECTOR = "selector"
    APP_TARGET = "app_target"


# Precedence when several deployments (or several targeting terms of one) name a device.
SOURCE_RANK = {AssignmentSource.DEVICE: 1, AssignmentSource.GROUP: 2, AssignmentSource.SELECTOR: 3,
               AssignmentSource.APP_TARGET: 4}


class AssignmentStatus(models.TextChoices):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    INSTALLED = "installed"
    ACTIVE = "active"
    FAILED = "failed"


class DeviceAssignment(OrgScopedModel):
    """One targeted device of one deployment; rows are written by set-based SQL only (hence the
    database-generated integer key: it is never exposed, assignments are addressed by device)."""

    # No single-column indexes: (deployment, device) and (device, in_rollout) below lead with each,
    # and materializing a rollout writes every index of 100,000s of rows. Every query names a
    # deployment or a device, so org_id needs none either.
    organization = organization_key(db_index=False)
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    source = models.CharField(max_length=16, choices=AssignmentSource.choices)
    bucket = models.PositiveSmallIntegerField(help_text="Stable 0-99 hash of (device, deployment).")
    in_rollout = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=AssignmentStatus.choices, default=AssignmentStatus.PENDING)
    error = models.CharField(max_length=1000, blank=True, default="")
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["deployment", "device"], name="assignment_unique_device"),
        ]
        indexes = [
            models.Index(fields=["device", "in_rollout"], name="assignment_device"),
            models.Index(fields=["deployment", "status"], name="assignment_deployment_status"),
        ]


class DeviceState(OrgScopedModel):
    """The control loop's memory per device: desired revision and the last observed report."""

    device = models.OneToOneField(Device, primary_key=True, on_delete=models.CASCADE, related_name="control_state")
    revision = models.PositiveIntegerField(default=0)
    content_hash = models.CharField(max_length=64, blank=True, default="")
    observed_revision = models.PositiveIntegerField(default=0)
    observed_models = models.JSONField(default=list, blank=True)
    drift = models.BooleanField(default=False)
    drifted = models.JSONField(default=list, blank=True)
    observed_at = models.DateTimeField(null=True, blank=True)
    # What the content (content_hash) was computed from, for the steady path (deployments.freshness):
    # the organization's DesiredGeneration, and the device's own inputs (control.device_fingerprint).
    generation = models.BigIntegerField(null=True, blank=True)
    device_fingerprint = models.CharField(max_length=64, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)


class DesiredGeneration(models.Model):
    """A counter per organization that PostgreSQL triggers increase when a transaction that changed
    any input of a device's desired state commits (deployments.freshness)."""

    organization = models.OneToOneField(
        Organization, primary_key=True, on_delete=models.CASCADE, db_column="org_id", related_name="+"
    )
    value = models.BigIntegerField(default=0)


class CommandType(models.TextChoices):
    SYNC_NOW = "sync_now"
    REBOOT = "reboot"
    UPLOAD_LOGS = "upload_logs"
    CUSTOM = "custom"


class CommandStatus(models.TextChoices):
    QUEUED = "queued"
    DELIVERED = "delivered"
    ACKED = "acked"
    EXPIRED = "expired"


class DeviceCommand(OrgScopedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="commands", db_index=False)  # see Meta
    type = models.CharField(max_length=16, choices=CommandType.choices)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=CommandStatus.choices, default=CommandStatus.QUEUED)
    created_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    acked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["device", "status", "expires_at"], name="command_device_pending")]


# --- capability orchestration (issue 7) ------------------------------------------------------------------


class CapabilityProfile(OrgScopedModel):
    """The classifier's output for one device: its class and a score for every visible catalog variant
    ({variant id: {capability, compatible, reasons, predicted_latency_ms, score}}). Written in bulk."""

    device = models.OneToOneField(Device, primary_key=True, on_delete=models.CASCADE, related_name="capability_profile")
    device_class = models.CharField(max_length=32)
    scores = models.JSONField(default=dict, blank=True)
    classifier_version = models.CharField(max_length=32)
    computed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["organization", "device_class"], name="profile_org_class")]


class Route(models.TextChoices):
    LOCAL = "local"
    CLOUD = "cloud"


class RoutingEvent(OrgScopedModel):
    """One routing decision reported by an SDK: where an inference ran, with which variant, how fast."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    capability = models.ForeignKey(ModelCapability, on_delete=models.PROTECT, related_name="+")
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    device_identifier = models.CharField(max_length=255, blank=True, default="")
    route = models.CharField(max_length=8, choices=Route.choices)
    variant = models.ForeignKey(ModelVariant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    latency_ms = models.FloatField(null=True, blank=True)
    success = models.BooleanField(default=True)
    reason = models.CharField(max_length=200, blank=True, default="")
    ts = models.DateTimeField()
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-ts", "-id"]
        indexes = [
            models.Index(fields=["organization", "-ts"], name="routing_org_ts"),
            models.Index(fields=["organization", "app", "-ts"], name="routing_org_app_ts"),
            models.Index(fields=["organization", "variant", "ts"], name="routing_org_variant_ts"),
        ]


class TrainingRoundStatus(models.TextChoices):
    OPEN = "open"
    CLOSED = "closed"


class TrainingRoundOutcome(models.TextChoices):
    COMPLETED = "completed"
    INSUFFICIENT_PARTICIPANTS = "insufficient_participants"


class TrainingRound(OrgScopedModel):
    """A federated training round (seed 003): targeted devices are asked to participate through
    heartbeat/sync until they report an update or the round closes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    capability = models.ForeignKey(ModelCapability, on_delete=models.PROTECT, related_name="+")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=TrainingRoundStatus.choices, default=TrainingRoundStatus.OPEN)
    target_selector = models.JSONField(default=dict, blank=True)
    min_participants = models.PositiveIntegerField(default=1)
    deadline = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Set when the round closes: did at least min_participants devices participate?
    outcome = models.CharField(max_length=32, choices=TrainingRoundOutcome.choices, null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["app", "capability", "number"], name="training_round_unique_number"),
        ]
        indexes = [models.Index(fields=["organization", "status"], name="training_round_org_status")]


class TrainingParticipation(OrgScopedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    round = models.ForeignKey(TrainingRound, on_delete=models.CASCADE, related_name="participations")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    num_samples = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    update = models.JSONField(default=dict, blank=True, help_text="Update metadata: uri, size_bytes, sha256, …")
    submitted_at = models.DateTimeField()

    class Meta:
        ordering = ["submitted_at", "id"]
        constraints = [models.UniqueConstraint(fields=["round", "device"], name="training_participation_unique")]
