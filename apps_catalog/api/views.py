"""Catalog and apps endpoints. Thin: validate → service/selector → output serializer.

Catalog reads include the public catalog (org_id NULL), so they cannot use the org-filtered
OrgScopedViewSet; `CatalogViewMixin` gives them the same authentication, roles and pagination and
an explicit "public or mine" queryset (PostgreSQL RLS enforces the same). Writes touch only the
organization's own models: another organization's model is 404, a public one 403.
"""

from functools import cached_property

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.settings import api_settings

from apps_catalog import selectors, services
from apps_catalog.api import serializers as s
from apps_catalog.api.filters import CatalogModelFilter, VariantFilter
from apps_catalog.models import AppKey, AppTarget, CapabilitySlot, CatalogModel, InferenceConfig, ModelVariant
from fleet.activity.api.filters import ActivityFilter
from fleet.activity.api.serializers import ActivityEventSerializer
from fleet.activity.selectors import activity_list
from fleet.api.errors import ErrorSerializer
from fleet.api.views import OrgScopedAPIView, OrgScopedViewSet, is_uuid, validated
from fleet.tenancy.models import Role

READ_METHODS = ("GET", "HEAD", "OPTIONS")


# --- catalog ---------------------------------------------------------------------------------------


def keyed_pagination(results_key):
    """The default pagination naming its list `results_key` (so the OpenAPI schema names it too)."""
    return api_settings.DEFAULT_PAGINATION_CLASS.keyed(results_key)


class CatalogViewMixin:
    """Same contract as OrgScopedMixin (principal kinds, roles, results_key) for catalog reads that
    include public rows."""

    results_key = "results"  # the plural name of list responses
    principal_kinds = ("api_key", "user")
    read_role = Role.VIEWER
    write_role = Role.OPERATOR
    action_roles = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.pagination_class = keyed_pagination(cls.results_key)

    @property
    def principal(self):
        return self.request.auth

    @property
    def organization(self):
        return self.request.auth.organization

    def required_role(self, request):
        action_name = getattr(self, "action", None)
        for key in (action_name, request.method):
            if key in self.action_roles:
                return self.action_roles[key]
        return self.read_role if request.method in READ_METHODS else self.write_role

    def paginated(self, queryset, serializer_class):
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True).data)


class CapabilityViewSet(CatalogViewMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The global list of model capabilities (vision, chat, …)."""

    results_key = "capabilities"
    serializer_class = s.CapabilitySerializer
    filter_backends = []

    def get_queryset(self):
        return selectors.capability_list()


class CatalogModelViewSet(CatalogViewMixin, viewsets.GenericViewSet):
    """Public catalog models plus the organization's own; only its own are writable."""

    results_key = "models"
    serializer_class = s.CatalogModelSerializer
    filterset_class = CatalogModelFilter
    lookup_url_kwarg = "id"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            variants = self.action in ("variants", "create_variant")
            return ModelVariant.objects.none() if variants else CatalogModel.objects.none()
        return selectors.catalog_model_list(organization=self.organization)

    def get_object(self):
        value = self.kwargs[self.lookup_url_kwarg]
        model = self.get_queryset().filter(id=value).first() if is_uuid(value) else None
        if model is None:
            raise exceptions.NotFound("No such model.")
        return model

    def own_object(self):
        """The model for a write: 404 when missing or another organization's, 403 when public."""
        model = self.get_object()
        if model.organization_id is None:
            raise exceptions.PermissionDenied("Public catalog entries are read-only.")
        return model

    @extend_schema(operation_id="catalog_models_list")
    def list(self, request):
        return self.paginated(self.filter_queryset(self.get_queryset()), s.CatalogModelSerializer)

    @extend_schema(
        operation_id="catalog_models_create",
        request=s.CatalogModelCreateSerializer,
        responses={201: s.CatalogModelSerializer},
    )
    def create(self, request):
        data = validated(s.CatalogModelCreateSerializer, request.data)
        model = services.catalog_model_create(organization=self.organization, actor=self.principal.actor, **data)
        return Response(s.CatalogModelSerializer(model).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="catalog_models_retrieve")
    def retrieve(self, request, id=None):
        return Response(s.CatalogModelSerializer(self.get_object()).data)

    @extend_schema(
        operation_id="catalog_models_update", request=s.CatalogModelUpdateSerializer, responses=s.CatalogModelSerializer
    )
    def partial_update(self, request, id=None):
        model = self.own_object()
        data = validated(s.CatalogModelUpdateSerializer, request.data)
        model = services.catalog_model_update(model=model, actor=self.principal.actor, **data)
        return Response(s.CatalogModelSerializer(model).data)

    @extend_schema(operation_id="catalog_models_destroy", responses={204: None})
    def destroy(self, request, id=None):
        services.catalog_model_delete(model=self.own_object(), actor=self.principal.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(operation_id="catalog_models_variants_list", responses=s.ModelVariantSerializer(many=True))
    @action(detail=True, methods=["get"], filterset_class=VariantFilter, pagination_class=keyed_pagination("variants"))
    def variants(self, request, id=None):
        variants = selectors.variant_list(organization=self.organization, model=self.get_object())
        return self.paginated(self.filter_queryset(variants), s.ModelVariantSerializer)

    @extend_schema(
        operation_id="catalog_models_variants_create",
        request=s.ModelVariantCreateSerializer,
        responses={201: s.ModelVariantSerializer},
    )
    @variants.mapping.post
    def create_variant(self, request, id=None):
        model = self.own_object()
        data = validated(s.ModelVariantCreateSerializer, request.data)
        variant = services.model_variant_create(model=model, actor=self.principal.actor, **data)
        return Response(s.ModelVariantSerializer(variant).data, status=status.HTTP_201_CREATED)


class VariantViewSet(CatalogViewMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Every variant visible to the organization, filterable by capability, platform, format."""

    results_key = "variants"
    serializer_class = s.ModelVariantSerializer
    filterset_class = VariantFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ModelVariant.objects.none()
        return selectors.variant_list(organization=self.organization)


# --- apps ------------------------------------------------------------------------------------------


class AppScopedMixin:
    """Nested under /apps/{slug}: resolves the organization's app first (404 before any body
    validation). An app's own secret key (`ak_…`) may read what `app_key_readable` allows."""

    app_key_readable = False

    @cached_property
    def app(self):
        app = selectors.app_by_slug(organization=self.organization, slug=self.kwargs["slug"])
        if app is None:
            raise exceptions.NotFound("No such app.")
        if self.principal.kind == "app_key" and self.principal.extra["app"].id != app.id:
            raise exceptions.NotFound("No such app.")
        return app

    @property
    def principal_kinds(self):
        return ("api_key", "user", "app_key") if self.app_key_readable else ("api_key", "user")

    def required_role(self, request):
        if request.auth.kind == "app_key":
            if request.method not in READ_METHODS:
                raise exceptions.PermissionDenied("An app key can only read its app's configuration.")
            return None
        return super().required_role(request)


class IncludeArchivedSerializer(serializers.Serializer):
    include_archived = serializers.BooleanField(default=False)


class AppViewSet(mixins.ListModelMixin, OrgScopedViewSet):
    results_key = "apps"
    serializer_class = s.AppSerializer
    lookup_field = "slug"
    lookup_url_kwarg = "slug"
    lookup_fields = ("slug",)
    filter_backends = []

    def scoped_queryset(self):
        include_archived = self.action != "list" or validated(
            IncludeArchivedSerializer, self.request.query_params
        )["include_archived"]
        return selectors.app_list(organization=self.organization, include_archived=include_archived)

    @extend_schema(
        parameters=[
            OpenApiParameter("include_archived", OpenApiTypes.BOOL, description="Include archived apps (hidden by default).")
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=s.AppCreateSerializer, responses={201: s.AppSerializer})
    def create(self, request):
        data = validated(s.AppCreateSerializer, request.data)
        app = services.app_create(organization=self.organization, actor=self.principal.actor, **data)
        app = selectors.app_list(organization=self.organization).get(id=app.id)
        return Response(s.AppSerializer(app).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request, slug=None):
        return Response(s.AppSerializer(self.get_object()).data)

    @extend_schema(request=s.AppUpdateSerializer, responses={200: s.AppSerializer, 409: ErrorSerializer})
    def partial_update(self, request, slug=None):
        app = self.get_object()
        data = validated(s.AppUpdateSerializer, request.data)
        services.app_update(app=app, actor=self.principal.actor, **data)
        return Response(s.AppSerializer(self.get_object()).data)

    @extend_schema(request=None, responses=s.AppSerializer)
    @action(detail=True, methods=["post"])
    def archive(self, request, slug=None):
        app = services.app_archive(app=self.get_object(), actor=self.principal.actor)
        return Response(s.AppSerializer(app).data)

    @extend_schema(request=s.AppBootstrapSerializer, responses={201: s.BootstrapResultSerializer})
    @action(detail=False, methods=["post"])
    def bootstrap(self, request):
        data = validated(s.AppBootstrapSerializer, request.data)
        app, target, (app_key, secret), publishable = services.app_bootstrap(
            organization=self.organization, actor=self.principal.actor, **data
        )
        app_key.key = secret
        if publishable is not None:
            publishable_key, publishable_secret = publishable
            publishable_key.key = publishable_secret
            publishable = publishable_key
        app = selectors.app_list(organization=self.organization).get(id=app.id)
        body = {"app": app, "target": target, "app_key": app_key, "publishable_key": publishable}
        return Response(s.BootstrapResultSerializer(body).data, status=status.HTTP_201_CREATED)


class AppTargetViewSet(AppScopedMixin, OrgScopedViewSet):
    results_key = "targets"
    serializer_class = s.AppTargetSerializer

    def scoped_queryset(self):
        return AppTarget.objects.filter(app=self.app).order_by("created_at", "id")

    @extend_schema(operation_id="apps_targets_list", responses=s.AppTargetSerializer(many=True))
    def list(self, request, slug=None):
        return self.paginated(self.get_queryset(), s.AppTargetSerializer)

    @extend_schema(
        operation_id="apps_targets_create", request=s.AppTargetCreateSerializer,
        responses={201: s.AppTargetSerializer, 409: ErrorSerializer},
    )
    def create(self, request, slug=None):
        app = self.app
        data = validated(s.AppTargetCreateSerializer, request.data)
        target = services.app_target_create(app=app, actor=self.principal.actor, **data)
        return Response(s.AppTargetSerializer(target).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="apps_targets_destroy", responses={204: None})
    def destroy(self, request, slug=None, id=None):
        services.app_target_delete(target=self.get_object(), actor=self.principal.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AppKeyViewSet(AppScopedMixin, OrgScopedViewSet):
    results_key = "keys"
    serializer_class = s.AppKeySerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def scoped_queryset(self):
        return AppKey.objects.filter(app=self.app).order_by("-created_at", "id")

    @extend_schema(operation_id="apps_keys_list", responses=s.AppKeySerializer(many=True))
    def list(self, request, slug=None):
        return self.paginated(self.get_queryset(), s.AppKeySerializer)

    @extend_schema(
        operation_id="apps_keys_create", request=s.AppKeyCreateSerializer,
        responses={201: s.AppKeyCreatedSerializer, 409: ErrorSerializer},
    )
    def create(self, request, slug=None):
        app = self.app
        data = validated(s.AppKeyCreateSerializer, request.data)
        app_key, secret = services.app_key_create(app=app, actor=self.principal.actor, **data)
        app_key.key = secret
        return Response(s.AppKeyCreatedSerializer(app_key).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="apps_keys_revoke", responses={204: None})
    def destroy(self, request, slug=None, id=None):
        services.app_key_revoke(app_key=self.get_object(), actor=self.principal.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CapabilitySlotViewSet(AppScopedMixin, OrgScopedViewSet):
    """PUT replaces a slot's variant, serving policy and bindings wholesale; PATCH is not offered."""

    results_key = "capabilities"
    serializer_class = s.CapabilitySlotSerializer
    lookup_url_kwarg = "key"
    lookup_fields = ("capability__key",)
    app_key_readable = True

    def scoped_queryset(self):
        return selectors.slots_with_refs().filter(app=self.app)

    @extend_schema(operation_id="apps_capabilities_list", responses=s.CapabilitySlotSerializer(many=True))
    def list(self, request, slug=None):
        return self.paginated(self.get_queryset(), s.CapabilitySlotSerializer)

    @extend_schema(operation_id="apps_capabilities_retrieve", responses=s.CapabilitySlotSerializer)
    def retrieve(self, request, slug=None, key=None):
        return Response(s.CapabilitySlotSerializer(self.get_object()).data)

    @extend_schema(
        operation_id="apps_capabilities_put",
        request=s.CapabilitySlotPutSerializer,
        responses={200: s.CapabilitySlotSerializer, 201: s.CapabilitySlotSerializer, 409: ErrorSerializer},
    )
    def update(self, request, slug=None, key=None):
        app = self.app
        capability = selectors.capability_get(key=key)
        if capability is None:
            raise exceptions.NotFound("No such capability.")
        data = validated(s.CapabilitySlotPutSerializer, request.data)
        slot, created = services.capability_slot_set(
            app=app, capability=capability, actor=self.principal.actor, **data
        )
        slot = self.get_queryset().get(id=slot.id)
        return Response(
            s.CapabilitySlotSerializer(slot).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @extend_schema(operation_id="apps_capabilities_destroy", responses={204: None})
    def destroy(self, request, slug=None, key=None):
        services.capability_slot_delete(slot=self.get_object(), actor=self.principal.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InferenceConfigView(AppScopedMixin, OrgScopedAPIView):
    serializer_class = s.InferenceConfigSerializer
    app_key_readable = True

    def scoped_queryset(self):
        return InferenceConfig.objects.filter(app=self.app)

    def config(self):
        config = self.get_queryset().first()
        if config is None:
            raise exceptions.NotFound("This app has no inference config.")
        return config

    @extend_schema(operation_id="apps_inference_config_retrieve", responses=s.InferenceConfigSerializer)
    def get(self, request, slug):
        return Response(s.InferenceConfigSerializer(self.config()).data)

    @extend_schema(
        operation_id="apps_inference_config_put",
        request=s.InferenceConfigPutSerializer,
        responses={200: s.InferenceConfigSerializer, 201: s.InferenceConfigSerializer, 409: ErrorSerializer},
    )
    def put(self, request, slug):
        app = self.app
        data = validated(s.InferenceConfigPutSerializer, request.data)
        config, created = services.inference_config_set(app=app, actor=self.principal.actor, **data)
        return Response(
            s.InferenceConfigSerializer(config).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @extend_schema(operation_id="apps_inference_config_destroy", responses={204: None})
    def delete(self, request, slug):
        services.inference_config_delete(config=self.config(), actor=self.principal.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AppActivityView(AppScopedMixin, OrgScopedAPIView):
    """The organization's activity feed restricted to this app, newest first."""

    results_key = "events"
    serializer_class = ActivityEventSerializer
    filterset_class = ActivityFilter

    def scoped_queryset(self):
        return activity_list(organization=self.organization, app_id=self.app.id)

    @extend_schema(operation_id="apps_activity_list", responses=ActivityEventSerializer(many=True))
    def get(self, request, slug):
        return self.paginated(self.filter_queryset(self.get_queryset()), ActivityEventSerializer)


class FirstRequestView(AppScopedMixin, OrgScopedAPIView):
    """Has any inference request (cloud or on-device) been received for this app yet?"""

    serializer_class = s.FirstRequestSerializer

    def scoped_queryset(self):  # pragma: no cover - this view reads through a selector
        return CapabilitySlot.objects.none()

    @extend_schema(operation_id="apps_first_request_retrieve", responses=s.FirstRequestSerializer)
    def get(self, request, slug):
        result = selectors.first_request(organization=self.organization, app=self.app)
        return Response(s.FirstRequestSerializer(result).data)

