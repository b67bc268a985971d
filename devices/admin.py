"""Operator console for devices. Actions call the same services as the API."""

from django.contrib import admin, messages
from django.http import Http404, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from fleet.activity.services import Actor
from fleet.activity.models import ActorType
from fleet.errors import DomainError
from fleet.tenancy.admin_site import OrgScopedAdmin

from . import selectors, services
from .models import Device, DeviceToken, DeviceUser, EndUser

RECENT_EVENTS = 20


def admin_actor(request):
    return Actor(type=ActorType.USER, id=str(request.user.pk), label=request.user.get_username())


class LabelFilter(admin.SimpleListFilter):
    """`key=value` label selector from the device list's filter sidebar (values seen on the page's devices)."""

    title = "label"
    parameter_name = "label"

    def lookups(self, request, model_admin):
        pairs = set()
        for labels in model_admin.get_queryset(request).values_list("labels", flat=True)[:500]:
            pairs.update(f"{k}={v}" for k, v in (labels or {}).items())
        return [(pair, pair) for pair in sorted(pairs)[:50]]

    def queryset(self, request, queryset):
        if not self.value() or "=" not in self.value():
            return queryset
        from .api.filters import label_filter

        key, _, value = self.value().partition("=")
        return label_filter(queryset, {key: value})


class DeviceUserInline(admin.TabularInline):
    model = DeviceUser
    extra = 0
    fields = ["user", "enrolled_at", "last_seen_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Device)
class DeviceAdmin(OrgScopedAdmin):
    list_display = [
        "device_id", "name", "organization", "platform", "status", "connectivity_status", "last_heartbeat",
        "agent_version",
    ]
    list_filter = ["status", "platform", "connectivity_status", LabelFilter]
    search_fields = ["device_id", "name", "serial_number"]
    list_select_related = ["organization"]
    actions = ["revoke", "archive"]
    inlines = [DeviceUserInline]
    fieldsets = [
        (None, {"fields": ["organization", "device_id", "name", "platform", "status", "connectivity_status"]}),
        ("Labels and capabilities", {"fields": ["labels", "capabilities"]}),
        ("Heartbeat", {"fields": ["last_heartbeat", "heartbeat_interval_s", "last_metrics"]}),
        ("Inventory", {"fields": ["serial_number", "unique_key", "os_name", "os_version", "agent_version",
                                  "installed_at", "hardware", "extensions"]}),
        ("Latest frame", {"fields": ["frame_thumbnail"]}),
        ("Recent activity", {"fields": ["recent_activity"]}),
        ("Record", {"fields": ["id", "created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        # Every write goes through a service (revoke/archive actions); the page is for reading.
        return [f for fieldset in self.fieldsets for f in fieldset[1]["fields"]]

    def has_add_permission(self, request):
        return False  # devices register through the API

    def has_delete_permission(self, request, obj=None):
        return False  # DELETE /devices/{device}: revoked or archived only, through the service

    def get_urls(self):
        view = self.admin_site.admin_view(self.frame_view)
        return [path("<uuid:pk>/frame.jpg", view, name="devices_device_frame"), *super().get_urls()]

    def frame_view(self, request, pk):
        device = self.get_queryset(request).filter(pk=pk).first()
        content = services.device_frame_read(device=device) if device is not None else None
        if content is None:
            raise Http404("No frame.")
        return HttpResponse(content, content_type="image/jpeg", headers={"Cache-Control": "private, max-age=5"})

    @admin.display(description="Latest frame")
    def frame_thumbnail(self, obj):
        if not obj.frame_path:
            return "No frame yet."
        url = reverse("admin:devices_device_frame", args=[obj.pk])
        return format_html(
            '<a href="{}"><img src="{}" alt="latest frame" style="max-width:320px;max-height:240px"></a><br>'
            "{}×{}, {} bytes, captured {}",
            url, url, obj.frame_width, obj.frame_height, obj.frame_size_bytes, obj.frame_captured_at,
        )

    @admin.display(description="Recent activity")
    def recent_activity(self, obj):
        events = selectors.device_activity(organization=obj.organization, device=obj)[:RECENT_EVENTS]
        if not events:
            return "No activity."
        rows = format_html_join(
            "", "<li>{} — {} by {}:{}</li>", ((e.created_at, e.verb, e.actor_type, e.actor_label) for e in events)
        )
        return format_html("<ul>{}</ul>", rows)

    @admin.action(description="Revoke selected devices (and their tokens)")
    def revoke(self, request, queryset):
        for device in queryset.select_related("organization"):
            services.device_revoke(device=device, actor=admin_actor(request))
        self.message_user(request, f"Revoked {queryset.count()} device(s).", messages.SUCCESS)

    @admin.action(description="Archive selected devices")
    def archive(self, request, queryset):
        done, failed = 0, []
        for device in queryset.select_related("organization"):
            try:
                services.device_archive(device=device, actor=admin_actor(request))
                done += 1
            except DomainError as exc:
                failed.append(f"{device.device_id}: {exc.message}")
        self.message_user(request, f"Archived {done} device(s).", messages.SUCCESS)
        for failure in failed:
            self.message_user(request, failure, messages.WARNING)


@admin.register(DeviceToken)
class DeviceTokenAdmin(OrgScopedAdmin):
    list_display = ["prefix", "device", "organization", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["organization"]
    search_fields = ["prefix", "device__device_id"]
    fields = ["device", "organization", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    list_select_related = ["device", "organization"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(EndUser)
class EndUserAdmin(OrgScopedAdmin):
    list_display = ["username", "user_key", "organization", "last_activity_at"]
    search_fields = ["username", "user_key"]
    readonly_fields = ["organization", "user_key", "username", "last_activity_at", "last_desktop_activity_at",
                       "last_web_activity_at", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False
