from django.contrib import admin, messages
from django.utils.html import format_html

from fleet.errors import DomainError
from fleet.tenancy.admin_site import OrgScopedAdmin

from . import services
from .models import ExportJob, Status


@admin.register(ExportJob)
class ExportJobAdmin(OrgScopedAdmin):
    list_display = [
        "created_at", "organization", "scope_type", "status", "progress_bar", "size_bytes", "reading_count",
        "annotation_count", "attempts", "download",
    ]
    list_filter = ["status", "scope_type", "format"]
    search_fields = ["id", "requested_by"]
    list_select_related = ["organization"]
    readonly_fields = [f.name for f in ExportJob._meta.fields]
    actions = ["rerun"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="progress")
    def progress_bar(self, job):
        percent = round((job.progress or 0) * 100)
        return format_html('<progress max="100" value="{}"></progress> {}%', percent, percent)

    @admin.display(description="download")
    def download(self, job):
        url = services.export_download_url(job=job)
        return format_html('<a href="{}">zip</a>', url) if url else "—"

    @admin.action(description="Re-run the selected exports")
    def rerun(self, request, queryset):
        done = 0
        for job in queryset.exclude(status__in=[Status.PENDING, Status.RUNNING]):
            try:
                services.export_rerun(job=job)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{job.id}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{done} export(s) queued again.")
