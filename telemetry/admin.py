from django.contrib import admin, messages

from fleet.errors import DomainError
from fleet.tenancy.admin_site import OrgScopedAdmin

from . import services
from .models import Annotation, AnnotationClass, QuarantinedReading, Reading


@admin.register(Reading)
class ReadingAdmin(OrgScopedAdmin):
    list_display = ["ts", "organization", "device", "metric", "value"]
    list_filter = ["metric"]
    search_fields = ["device__device_id", "metric"]
    list_select_related = ["organization", "device"]
    show_full_result_count = False  # the table is large

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(QuarantinedReading)
class QuarantinedReadingAdmin(OrgScopedAdmin):
    list_display = ["received_at", "organization", "device", "reason"]
    search_fields = ["reason", "device__device_id"]
    readonly_fields = ["organization", "device", "raw", "reason", "received_at"]
    list_select_related = ["organization", "device"]
    actions = ["release"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Release (re-validate and store)")
    def release(self, request, queryset):
        done = 0
        for item in queryset.select_related("organization", "device"):
            try:
                services.quarantine_release(item=item)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{item.id}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{done} released.")


@admin.register(AnnotationClass)
class AnnotationClassAdmin(OrgScopedAdmin):
    list_display = ["name", "organization", "color", "created_at"]
    search_fields = ["name"]


@admin.register(Annotation)
class AnnotationAdmin(OrgScopedAdmin):
    list_display = ["ts_from", "ts_to", "organization", "device", "annotation_class", "text", "created_by"]
    list_filter = ["annotation_class"]
    search_fields = ["text", "device__device_id"]
    list_select_related = ["organization", "device", "annotation_class"]
    raw_id_fields = ["device"]
