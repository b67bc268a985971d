"""The operator console. Every admin view runs under row-level security: superusers through the
audited bypass, staff members with their own organizations as the current ones."""

from functools import wraps

from django.contrib import admin

from fleet.tenancy import rls, selectors


class FleetAdminSite(admin.AdminSite):
    site_header = "Fleet operator console"
    site_title = "Fleet"
    index_title = "Operations"

    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        @wraps(view)
        def scoped(request, *args, **kwargs):
            with admin_scope(request.user):
                response = inner(request, *args, **kwargs)
                # Render lazy template responses while the organization context is still set.
                if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                    response.render()
                return response

        return scoped


class admin_scope:
    def __init__(self, user):
        self.user = user
        self._bypass = None

    def __enter__(self):
        if not (self.user.is_authenticated and self.user.is_staff):
            return
        if self.user.is_superuser:
            self._bypass = rls.bypass(reason="admin superuser", actor=f"user:{self.user.pk}")
            self._bypass.__enter__()
        else:
            org_ids = [m.organization_id for m in selectors.memberships_of_user(user=self.user)]
            rls.activate(org_ids=org_ids)

    def __exit__(self, *exc):
        if self._bypass is not None:
            return self._bypass.__exit__(*exc)
        return False


class OrgScopedAdmin(admin.ModelAdmin):
    """Staff members see and pick only their organizations (RLS enforces the same underneath)."""

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(organization_id__in=rls.current_org_ids())

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization" and not request.user.is_superuser:
            from fleet.tenancy.models import Organization

            kwargs["queryset"] = Organization.objects.filter(id__in=rls.current_org_ids())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
