from django.contrib import admin, messages
from django.template.response import TemplateResponse

from fleet.tenancy import rls, services
from fleet.tenancy.admin_site import OrgScopedAdmin
from fleet.tenancy.models import ApiKey, Membership, Organization


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(id__in=rls.current_org_ids())

    def has_add_permission(self, request):
        return request.user.is_superuser


@admin.register(Membership)
class MembershipAdmin(OrgScopedAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__username", "organization__slug"]
    autocomplete_fields = ["user"]


@admin.register(ApiKey)
class ApiKeyAdmin(OrgScopedAdmin):
    list_display = ["name", "organization", "prefix", "role", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["role", "organization"]
    search_fields = ["name", "prefix"]
    fields = ["organization", "name", "role", "expires_at", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # a key's organization and role never change after creation
            return [*self.readonly_fields, "organization", "role"]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        api_key, secret = services.api_key_create(
            organization=obj.organization,
            name=obj.name,
            role=obj.role,
            created_by=request.user,
            expires_at=obj.expires_at,
        )
        obj.__dict__.update({k: v for k, v in api_key.__dict__.items() if not k.startswith("_")})
        obj._state.adding = False
        request._fleet_new_secret = secret

    def response_add(self, request, obj, post_url_continue=None):
        # Show the secret in this response only: it is never stored, not even in a message cookie.
        context = {**self.admin_site.each_context(request), "api_key": obj, "secret": request._fleet_new_secret,
                   "opts": self.model._meta, "title": "API key created"}
        return TemplateResponse(request, "admin/tenancy/apikey/created.html", context)

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        for api_key in queryset:
            services.api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)
