from rest_framework import exceptions, permissions

from fleet.api.authentication import Principal
from fleet.tenancy.models import Role


class HasOrganizationRole(permissions.BasePermission):
    """The caller is of a kind the view accepts and has at least the role the method needs."""

    def has_permission(self, request, view):
        principal = request.auth
        if not isinstance(principal, Principal):
            raise exceptions.NotAuthenticated()
        if principal.kind not in getattr(view, "principal_kinds", ("api_key", "user")):
            raise exceptions.PermissionDenied("This credential cannot be used for this operation.")
        required = view.required_role(request) if hasattr(view, "required_role") else Role.VIEWER
        if required is None:
            return True
        if principal.role is None or not Role.at_least(principal.role, required):
            raise exceptions.PermissionDenied(f"This operation needs the {required} role.")
        return True
