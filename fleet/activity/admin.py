from django.contrib import admin

from fleet.activity.models import ActivityEvent
from fleet.tenancy.admin_site import OrgScopedAdmin


@admin.register(ActivityEvent)
class ActivityEventAdmin(OrgScopedAdmin):
    list_display = ["created_at", "organization", "verb", "actor_type", "actor_label", "subject_type", "subject_id"]
    list_filter = ["verb", "actor_type", "subject_type"]
    search_fields = ["verb", "subject_id", "actor_label"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
