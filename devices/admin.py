"""Operator console for devices. Actions call the same services as the API."""

from django import forms
from django.contrib import admin, messages
from django.http import Http404, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from fleet.activity.services import Actor
from fleet.activity.models import ActorType
from fleet.errors import DomainError
from fleet.tenancy.admin_site import OrgScopedAdmin

from . import selectors, services
from .label_selector import validate_selector
from .models import Device, DeviceGroup, DeviceGroupMembership, DeviceToken, DeviceUser, EndUser, GroupKind, Platform

RECENT_EVENTS = 20
MEMBERS_SHOWN = 50


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


class DeviceGroupForm(forms.ModelForm):
    """The selector as editable JSON, validated by the same rules as the API."""

    class Meta:
        model = DeviceGroup
        fields = ["organization", "name", "slug", "description", "kind", "selector"]

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind") or GroupKind.DYNAMIC
        if self.instance.pk and kind != self.instance.kind:
            self.add_error("kind", "A group's kind cannot change; create a new group.")
        selector = cleaned.get("selector")
        if kind == GroupKind.STATIC:
            has_terms = any(selector.values()) if isinstance(selector, dict) else bool(selector)
            if has_terms:
                self.add_error("selector", "Static groups have explicit members, not a selector.")
            cleaned["selector"] = {}
        else:
            try:
                cleaned["selector"] = validate_selector(selector, platforms=Platform.values)
            except DomainError as exc:
                self.add_error("selector", "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.fields.items()) or exc.message)
        return cleaned


@admin.register(DeviceGroup)
class DeviceGroupAdmin(OrgScopedAdmin):
    """Groups with member counts; saves and deletes go through the services (memberships stay exact)."""

    form = DeviceGroupForm
    list_display = ["name", "slug", "organization", "kind", "member_count", "updated_at"]
    list_filter = ["kind"]
    search_fields = ["name", "slug"]
    list_select_related = ["organization"]
    readonly_fields = ["member_count", "preview", "members", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(self.readonly_fields)
        if obj is not None:
            fields += ["organization", "kind"]
        return fields

    @admin.display(description="Preview of matching devices")
    def preview(self, obj):
        if obj is None or obj.pk is None or obj.kind != GroupKind.DYNAMIC:
            return "Save a dynamic group to preview its selector."
        result = services.device_group_preview(organization=obj.organization, selector=obj.selector)
        rows = format_html_join("", "<li>{} ({}, {})</li>", ((d.device_id, d.platform, d.status) for d in result["sample"]))
        return format_html("<p>{} device(s) match now.</p><ul>{}</ul>", result["total"], rows)

    @admin.display(description="Members")
    def members(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        rows = (
            DeviceGroupMembership.objects.filter(group=obj).select_related("device").order_by("device__device_id")
        )[:MEMBERS_SHOWN]
        items = format_html_join(
            "", '<li><a href="{}">{}</a> ({})</li>',
            ((reverse("admin:devices_device_change", args=[m.device_id]), m.device.device_id, m.reason) for m in rows),
        )
        more = f" (first {MEMBERS_SHOWN} shown)" if obj.member_count > MEMBERS_SHOWN else ""
        return format_html("<p>{} member(s){}.</p><ul>{}</ul>", obj.member_count, more, items)

    def save_model(self, request, obj, form, change):
        data = {key: form.cleaned_data.get(key) for key in ("name", "slug", "description")}
        if not change:
            group = services.device_group_create(
                organization=form.cleaned_data["organization"], actor=admin_actor(request), kind=obj.kind,
                selector=form.cleaned_data.get("selector") if obj.kind == GroupKind.DYNAMIC else None, **data,
            )
        else:
            original = DeviceGroup.objects.select_related("organization").get(pk=obj.pk)
            group = services.device_group_update(
                group=original, actor=admin_actor(request),
                selector=form.cleaned_data.get("selector") if original.kind == GroupKind.DYNAMIC else None, **data,
            )
        obj.__dict__.update({k: v for k, v in group.__dict__.items() if k != "_state"})
        obj._state.adding = False

    def delete_model(self, request, obj):
        services.device_group_delete(group=obj, actor=admin_actor(request))

    def delete_queryset(self, request, queryset):
        for group in queryset.select_related("organization"):
            services.device_group_delete(group=group, actor=admin_actor(request))
