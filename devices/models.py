"""Devices, their tokens, end users seen on them, and their latest camera frame."""

import uuid

from django.db import models

from apps_catalog.models import App, AppTarget, Platform  # noqa: F401 (one platform list for devices and apps)
from fleet.tenancy.models import OrgScopedModel, organization_key

LABELS_MAX = 64
CAPABILITIES_MAX_BYTES = 16 * 1024
DEFAULT_HEARTBEAT_INTERVAL_S = 60
STALE_FACTOR = 2  # online while the last heartbeat is within 2 x interval
OFFLINE_FACTOR = 10  # stale up to 10 x interval, then offline


class DeviceStatus(models.TextChoices):
    PENDING = "pending"
    ACTIVE = "active"
    INACTIVE = "inactive"
    REVOKED = "revoked"
    ARCHIVED = "archived"


class Connectivity(models.TextChoices):
    ONLINE = "online"
    STALE = "stale"
    OFFLINE = "offline"
    NEVER_SEEN = "never_seen"


class Device(OrgScopedModel):
    # The (organization, …) indexes below lead with org_id: one index fewer to rewrite when a bulk
    # change updates 100,000s of devices.
    organization = organization_key(db_index=False)
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device_id = models.CharField(max_length=255, help_text="User-chosen identifier, unique per organization.")
    name = models.CharField(max_length=255, blank=True, default="")
    platform = models.CharField(max_length=16, choices=Platform.choices, default=Platform.PYTHON)
    status = models.CharField(max_length=16, choices=DeviceStatus.choices, default=DeviceStatus.ACTIVE)
    connectivity_status = models.CharField(
        max_length=16, choices=Connectivity.choices, default=Connectivity.NEVER_SEEN
    )
    labels = models.JSONField(default=dict, blank=True)
    capabilities = models.JSONField(default=dict, blank=True)
    # The app it registered for, and the matching target (platform + bundle identifier).
    app = models.ForeignKey(App, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices")
    app_target = models.ForeignKey(AppTarget, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices")

    # Inventory (seed 002's field names).
    serial_number = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 (nullable per the DTO)
    unique_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    os_name = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    os_version = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    agent_version = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    installed_at = models.DateTimeField(null=True, blank=True)
    hardware = models.JSONField(default=dict, blank=True)  # manufacturer, model, cpu_model, cpu_cores, ram
    extensions = models.JSONField(default=dict, blank=True)  # chrome|edge|firefox -> {version, installed, ...}

    # Heartbeat state: the latest payload is the current state; nothing accumulates.
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    last_metrics = models.JSONField(default=dict, blank=True)
    heartbeat_interval_s = models.PositiveIntegerField(default=DEFAULT_HEARTBEAT_INTERVAL_S)
    # Bumped by apps above when they have something for the next heartbeat (a command, a training
    # round): heartbeats of devices with nothing pending run no provider queries at all. New devices
    # start flagged so their first heartbeat picks up whatever was already waiting for them.
    attention = models.PositiveIntegerField(default=1, editable=False)
    # Deadlines derived from the last heartbeat, so the sweep is an indexed range scan.
    stale_at = models.DateTimeField(null=True, blank=True, editable=False)
    offline_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Latest camera frame (the file lives in default_storage).
    frame_path = models.CharField(max_length=500, blank=True, default="", editable=False)
    frame_captured_at = models.DateTimeField(null=True, blank=True, editable=False)
    frame_size_bytes = models.PositiveIntegerField(null=True, blank=True, editable=False)
    frame_width = models.PositiveIntegerField(null=True, blank=True, editable=False)
    frame_height = models.PositiveIntegerField(null=True, blank=True, editable=False)
    frame_etag = models.CharField(max_length=64, blank=True, default="", editable=False)
    frame_event_at = models.DateTimeField(null=True, blank=True, editable=False)  # activity at most hourly

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "device_id"], name="device_unique_device_id"),
        ]
        indexes = [
            models.Index(fields=["organization", "status"], name="device_org_status"),
            models.Index(fields=["organization", "platform"], name="device_org_platform"),
            models.Index(fields=["organization", "connectivity_status"], name="device_org_connectivity"),
            models.Index(fields=["organization", "-created_at"], name="device_org_created"),
        ]
        # No index on what every heartbeat rewrites (last_heartbeat, stale_at, offline_at): the UPDATE
        # then stays a HOT update (no index entries written; migration 0007 leaves room on each page)
        # instead of inserting into every index of the table. The sweep and the rare last-seen
        # ordering scan instead (docs/performance.md). No index on labels either: under row-level
        # security no label filter can use one (migration 0011).

    def __str__(self):
        return self.name or self.device_id

    @property
    def last_seen_at(self):
        return self.last_heartbeat


class DeviceToken(OrgScopedModel):
    """A device's bearer credential (`dk_…`): stored hashed, shown once, rotated on re-registration."""

    PREFIX = "dk_"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="tokens", db_index=False)  # (device, revoked_at)
    prefix = models.CharField(max_length=32, editable=False)
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["device", "revoked_at"], name="devicetoken_device_revoked")]

    def __str__(self):
        return f"{self.prefix}…"


class EndUser(OrgScopedModel):
    """A person seen on devices (reported by desktop agents)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user_key = models.CharField(max_length=255)
    username = models.CharField(max_length=255, blank=True, default="")
    last_activity_at = models.DateTimeField(null=True, blank=True)
    last_desktop_activity_at = models.DateTimeField(null=True, blank=True)
    last_web_activity_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["username", "id"]
        verbose_name = "end user"
        constraints = [models.UniqueConstraint(fields=["organization", "user_key"], name="enduser_unique_key")]

    def __str__(self):
        return self.username or self.user_key


class DeviceUser(OrgScopedModel):
    """The device–user junction: when a user was first and last seen on a device."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="device_users")
    user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="user_devices")
    enrolled_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen_at", "id"]
        constraints = [models.UniqueConstraint(fields=["device", "user"], name="deviceuser_unique")]
        indexes = [models.Index(fields=["organization", "user"], name="deviceuser_org_user")]

    def __str__(self):
        return f"{self.user_id} on {self.device_id}"


class GroupKind(models.TextChoices):
    DYNAMIC = "dynamic"
    STATIC = "static"


class MembershipReason(models.TextChoices):
    SELECTOR = "selector"
    STATIC = "static"


class DeviceGroup(OrgScopedModel):
    """A set of devices: `dynamic` (a label selector, materialized) or `static` (explicit members)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True, default="")
    kind = models.CharField(max_length=16, choices=GroupKind.choices, default=GroupKind.DYNAMIC)
    selector = models.JSONField(default=dict, blank=True)
    member_count = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="devicegroup_unique_slug")]
        indexes = [models.Index(fields=["organization", "kind"], name="devicegroup_org_kind")]

    def __str__(self):
        return self.name


class DeviceGroupMembership(OrgScopedModel):
    """Materialized membership: exact at every commit (see devices.groups)."""

    # The (group, device) pair is the key: a surrogate id would be one more index rewritten for every
    # membership a bulk label change moves (40% of that UPDATE at 100,000 devices). No single-column
    # indexes: the key and (device, group) below lead with each. Every query names a group or a
    # device, so org_id needs none either.
    pk = models.CompositePrimaryKey("group", "device")
    organization = organization_key(db_index=False)
    group = models.ForeignKey(DeviceGroup, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="group_memberships", db_index=False)
    reason = models.CharField(max_length=16, choices=MembershipReason.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "group_id", "device_id"]
        indexes = [models.Index(fields=["device", "group"], name="devicegroupmembership_device")]

    def __str__(self):
        return f"{self.device_id} in {self.group_id}"
