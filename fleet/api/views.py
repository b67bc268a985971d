"""Organization-scoped base views: scoping cannot be forgotten or overridden.

Concrete views supply `scoped_queryset()` (the model's base queryset, with its select_related) and
never touch the organization filter or the object lookup: the org filter, the lookup by id or by a
natural key, and the 404 for anything outside the organization live here once.
"""

import uuid

from django.conf import settings
from django.http import QueryDict
from rest_framework import generics, serializers, viewsets
from rest_framework.exceptions import NotFound, ValidationError

from fleet.api.errors import PayloadTooLarge
from fleet.tenancy.models import Role

SEALED = ("get_queryset", "get_object", "initial")


def is_uuid(value):
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def validated(serializer_class, data, **context):
    """Validate input with an input serializer (400 naming each field) and return its data."""
    serializer = serializer_class(data=data, context=context)
    if isinstance(data, QueryDict):
        # Query parameters: a single-valued one given several times is ambiguous (which one wins?): 400.
        repeated = {
            name: ["Give this parameter once."]
            for name, field in serializer.fields.items()
            if len(data.getlist(name)) > 1 and not isinstance(field, (serializers.ListField, serializers.MultipleChoiceField))
        }
        if repeated:
            raise ValidationError(repeated)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class OrgScopedMixin:
    results_key = "results"  # the plural name of list responses
    lookup_field = "id"
    lookup_url_kwarg = "id"
    lookup_value_regex = "[^/]+"
    # Fields tried in order for the path value; "id" is tried only when the value is a UUID.
    lookup_fields = ("id",)
    principal_kinds = ("api_key", "user")
    read_role = Role.VIEWER
    write_role = Role.OPERATOR
    action_roles = {}  # action (or HTTP method) -> role, overriding read_role / write_role
    max_body_bytes = None  # per-endpoint cap; None: settings.JSON_MAX_BYTES (all below MAX_REQUEST_BYTES)
    model = None  # for schema generation, when the serializer is not a ModelSerializer

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        overridden = [name for name in SEALED if name in cls.__dict__]
        if overridden:
            raise TypeError(f"{cls.__name__} may not override {', '.join(overridden)}: use scoped_queryset().")
        # Lists are named after the resource: {"<results_key>": [...], "total", "limit", "offset"}.
        pagination = cls.__dict__.get("pagination_class") or getattr(cls, "pagination_class", None)
        if pagination is not None and hasattr(pagination, "keyed") and pagination.results_key != cls.results_key:
            cls.pagination_class = pagination.keyed(cls.results_key)

    # --- the sanctioned hook ---------------------------------------------------------------------
    def scoped_queryset(self):
        raise NotImplementedError(f"{type(self).__name__} must define scoped_queryset()")

    # --- sealed ----------------------------------------------------------------------------------
    @property
    def principal(self):
        return self.request.auth

    @property
    def organization(self):
        return self.request.auth.organization

    def initial(self, request, *args, **kwargs):
        # Before authentication: an oversized body is refused without being read. Bodies without a
        # Content-Length (chunked) never get here: fleet.api.middleware answers 411.
        limit = self.max_body_bytes if self.max_body_bytes is not None else settings.JSON_MAX_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
        super().initial(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no organization
            return (self.model or self.get_serializer_class().Meta.model).objects.none()
        return self.scoped_queryset().filter(organization_id=self.organization.id)

    def get_object(self):
        value = self.kwargs[self.lookup_url_kwarg]
        queryset = self.get_queryset()
        for field in self.lookup_fields:
            if field == "id" and not is_uuid(value):
                continue
            obj = queryset.filter(**{field: value}).first()
            if obj is not None:
                self.check_object_permissions(self.request, obj)
                return obj
        raise NotFound(f"No such {queryset.model._meta.verbose_name}.")

    # --- roles -----------------------------------------------------------------------------------
    def required_role(self, request):
        action = getattr(self, "action", None)
        for key in (action, request.method):
            if key in self.action_roles:
                return self.action_roles[key]
        return self.read_role if request.method in ("GET", "HEAD", "OPTIONS") else self.write_role

    # --- pagination ------------------------------------------------------------------------------
    def paginated(self, queryset, serializer_class, **context):
        page = self.paginate_queryset(queryset)
        serializer = serializer_class(page, many=True, context={**self.get_serializer_context(), **context})
        return self.get_paginated_response(serializer.data)


class OrgScopedViewSet(OrgScopedMixin, viewsets.GenericViewSet):
    """Base for resource viewsets under /api/v1/."""


class OrgScopedAPIView(OrgScopedMixin, generics.GenericAPIView):
    """Base for single-purpose endpoints (actions, singletons) under /api/v1/."""
