"""The operator console. Every admin view runs under row-level security: superusers through the
audited bypass, staff members with their own organizations as the current ones."""

import hashlib
import logging
import time
from functools import wraps

from django.conf import settings
from django.contrib import admin
from django.core.cache import cache
from django.http import HttpResponse

from fleet.api.throttling import hit
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

    def login(self, request, extra_context=None):
        """Django's login, with failed attempts counted per username and client address in the cache
        (shared by every web process through Redis): past ADMIN_LOGIN_MAX_FAILURES within
        ADMIN_LOGIN_WINDOW_S the form answers 429 without checking the password."""
        if request.method != "POST":
            return super().login(request, extra_context)
        key = login_failure_key(request)
        window = settings.ADMIN_LOGIN_WINDOW_S
        bucket = int(time.time() // window)
        counter = f"{key}:{bucket}"
        if (cache.get(counter) or 0) >= settings.ADMIN_LOGIN_MAX_FAILURES:
            logger.warning("admin login throttled for %s", key)
            response = HttpResponse(
                "Too many failed login attempts. Try again later.", status=429, content_type="text/plain"
            )
            response["Retry-After"] = str(max(1, int(window - time.time() % window)))
            return response
        response = super().login(request, extra_context)
        if not (request.user.is_authenticated and response.status_code in (301, 302)):
            hit(counter, window)
        return response


logger = logging.getLogger("fleet.audit")


def login_failure_key(request):
    """The username is hashed: the cache never holds what someone typed into the form."""
    username = (request.POST.get("username") or "").strip().lower()
    ident = f"{username}|{request.META.get('REMOTE_ADDR', '')}"
    return "adminlogin:" + hashlib.sha256(ident.encode()).hexdigest()[:32]


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
