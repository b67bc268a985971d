from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from apps_catalog.admin import AppAdmin
from apps_catalog.models import App
from devices.admin import DeviceAdmin
from devices.models import Device
from fleet.activity.services import Actor
from fleet.errors import DomainError
from fleet.tenancy.admin_site import OrgScopedAdmin

from . import services
from .models import AssignmentStatus, Deployment, DeviceAssignment, DeviceCommand, DeviceState
from .orchestrator import slot_coverage
from .selectors import deployment_progress, winning_assignments

BAR = (
    '<div style="width:160px;background:#eee;border-radius:3px" title="{title}">'
    '<div style="width:{width}%;background:#4a90d9;height:10px;border-radius:3px"></div></div>'
)


def _actor(request):
    return Actor(type="user", id=str(request.user.pk), label=request.user.get_username())


@admin.register(Deployment)
class DeploymentAdmin(OrgScopedAdmin):
    list_display = ["id", "organization", "app", "capability", "variant", "environment", "status", "stage", "rollout", "failed"]
    list_filter = ["status", "environment", "capability"]
    search_fields = ["id", "variant__name", "app__slug"]
    list_select_related = ["organization", "app", "capability", "variant"]
    readonly_fields = ["bindings", "status", "current_stage", "status_reason", "progress", "assignments_link",
                       "previous_deployment", "created_by", "created_at", "started_at", "completed_at"]
    fields = ["organization", "app", "capability", "variant", "environment", "targeting", "strategy", *readonly_fields]
    actions = ["start", "pause", "promote", "rollback"]

    def get_queryset(self, request):
        in_rollout = Q(assignments__in_rollout=True)
        return super().get_queryset(request).annotate(
            n_targeted=Count("assignments"),
            n_in_rollout=Count("assignments", filter=in_rollout),
            n_failed=Count("assignments", filter=in_rollout & Q(assignments__status=AssignmentStatus.FAILED)),
        )

    @admin.display(description="stage")
    def stage(self, obj):
        return f"{obj.current_stage + 1}/{len(obj.stages)} ({obj.stage_percent}%)"

    @admin.display(description="in rollout")
    def rollout(self, obj):
        width = round(100 * obj.n_in_rollout / obj.n_targeted) if obj.n_targeted else 0
        return format_html(BAR, width=width, title=f"{obj.n_in_rollout} of {obj.n_targeted} devices")

    @admin.display(description="failed")
    def failed(self, obj):
        return obj.n_failed

    @admin.display(description="progress")
    def progress(self, obj):
        if obj.pk is None:
            return "-"
        progress = deployment_progress(deployment=obj)
        counts = ", ".join(f"{status}: {count}" for status, count in progress["by_status"].items())
        width = round(100 * progress["in_rollout"] / progress["targeted"]) if progress["targeted"] else 0
        return format_html(
            BAR + "<p>{in_rollout} of {targeted} devices in the rollout; {counts}; failure rate {rate}</p>",
            width=width, title="", in_rollout=progress["in_rollout"], targeted=progress["targeted"],
            counts=counts, rate=f"{progress['failure_rate']:.1%}",
        )

    @admin.display(description="assignments")
    def assignments_link(self, obj):
        url = reverse("admin:deployments_deviceassignment_changelist") + f"?deployment__id__exact={obj.pk}"
        return format_html('<a href="{}">All assignments of this deployment</a>', url)

    def save_model(self, request, obj, form, change):
        if not change:
            services.validate_targeting(organization=obj.organization, app=obj.app, targeting=obj.targeting)
            services.stages_validate(obj.strategy)
            obj.bindings = services.slot_bindings(organization=obj.organization, app=obj.app, capability=obj.capability)
            obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)

    def _run(self, request, queryset, name):
        done = 0
        for deployment in queryset:
            try:
                services.ACTIONS[name](deployment=deployment, actor=_actor(request))
                done += 1
            except DomainError as error:
                self.message_user(request, f"{deployment.pk}: {error.message}", messages.ERROR)
        if done:
            self.message_user(request, f"{name}: {done} deployment(s).", messages.SUCCESS)

    @admin.action(description="Start selected deployments")
    def start(self, request, queryset):
        self._run(request, queryset, "start")

    @admin.action(description="Pause selected deployments")
    def pause(self, request, queryset):
        self._run(request, queryset, "pause")

    @admin.action(description="Promote selected deployments to their next stage")
    def promote(self, request, queryset):
        self._run(request, queryset, "promote")

    @admin.action(description="Roll back selected deployments")
    def rollback(self, request, queryset):
        self._run(request, queryset, "rollback")


@admin.register(DeviceAssignment)
class DeviceAssignmentAdmin(OrgScopedAdmin):
    list_display = ["device", "deployment", "source", "bucket", "in_rollout", "status", "error", "updated_at"]
    list_filter = ["status", "in_rollout", "source"]
    search_fields = ["device__device_id", "device__name"]
    list_select_related = ["device", "deployment"]
    raw_id_fields = ["device", "deployment"]

    def has_add_permission(self, request):
        return False  # assignments are materialized from deployments, never hand-made

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DeviceCommand)
class DeviceCommandAdmin(OrgScopedAdmin):
    list_display = ["device", "type", "status", "created_by", "created_at", "expires_at", "acked_at"]
    list_filter = ["status", "type"]
    search_fields = ["device__device_id"]
    list_select_related = ["device"]
    raw_id_fields = ["device"]


# --- slot coverage badge in the app list (the apps admin lives below deployments) --------------------------
BADGE = '<span style="padding:2px 6px;border-radius:8px;color:#fff;background:{}">{}</span>'
BADGE_COLORS = {"healthy": "#2e7d32", "degraded": "#ef6c00", "unconfigured": "#757575", "no_targets": "#9e9e9e"}


class AppHealthChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        # One batched computation for the page (a fixed number of aggregate queries).
        coverage = slot_coverage(apps=self.result_list)
        for app in self.result_list:
            app.coverage_status = coverage[app.id]["status"]


class AppHealthAdmin(AppAdmin):
    list_display = [*AppAdmin.list_display, "health"]

    def get_changelist(self, request, **kwargs):
        return AppHealthChangeList

    @admin.display(description="health")
    def health(self, obj):
        status = getattr(obj, "coverage_status", None)
        if status is None:
            return "-"
        return format_html(BADGE, BADGE_COLORS.get(status, "#757575"), status)


admin.site.unregister(App)
admin.site.register(App, AppHealthAdmin)


# --- a device's winning assignments and drift on its admin page (the devices admin lives below) -----------
class DeviceRolloutAdmin(DeviceAdmin):
    fieldsets = [*DeviceAdmin.fieldsets[:-1], ("Rollouts", {"fields": ["rollout_state"]}), DeviceAdmin.fieldsets[-1]]

    @admin.display(description="winning assignments and drift")
    def rollout_state(self, obj):
        if obj.pk is None:
            return "-"
        winners = winning_assignments(organization=obj.organization, device_ids=[obj.pk]).get(obj.pk, [])
        state = DeviceState.objects.filter(device=obj).first()
        rows = format_html_join(
            "", "<li>{}: {} {} ({}, {})</li>",
            ((w.deployment.capability.key, w.variant.name, w.variant.version, w.source, w.status)
             for w in winners),
        )
        drift = "drifted: " + ", ".join(d["capability"] for d in state.drifted) if state and state.drift else "no drift"
        return format_html("<ul>{}</ul><p>{}</p>", rows or "none", drift)


admin.site.unregister(Device)
admin.site.register(Device, DeviceRolloutAdmin)
