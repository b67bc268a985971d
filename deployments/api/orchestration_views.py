"""Capability orchestration endpoints (issue 7): preview / enable / check-optimization / optimize,
slot coverage health, capability profiles, routing telemetry, training rounds. Thin views."""

from functools import cached_property

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps_catalog import selectors as catalog
from apps_catalog.api.views import AppScopedMixin, keyed_pagination
from devices.api.views import DEVICE_PARAM, DeviceFacingMixin
from devices.models import Device
from fleet.api.errors import ErrorSerializer
from fleet.api.views import OrgScopedAPIView, OrgScopedViewSet, is_uuid, validated
from fleet.errors import Invalid
from fleet.tenancy.models import Role

from .. import orchestrator, routing, training
from ..classifier import CLASSIFIER_VERSION
from ..models import CapabilityProfile, Route, RoutingEvent
from . import orchestration_serializers as s

CONFLICT = OpenApiResponse(ErrorSerializer, "Conflict (see the message).")


# --- orchestrator ----------------------------------------------------------------------------------------------


class CapabilityScopedMixin(AppScopedMixin):
    """/apps/{slug}/capabilities/{key}/…: the organization's app, then a known capability (404 otherwise),
    both resolved before the body is read."""

    @cached_property
    def capability(self):
        capability = catalog.capability_get(key=self.kwargs["key"])
        if capability is None:
            raise exceptions.NotFound("No such capability.")
        return capability

    def scoped_queryset(self):  # pragma: no cover - these views read through services
        return CapabilityProfile.objects.none()

    def resolve(self, serializer_class):
        app, capability = self.app, self.capability
        return app, capability, validated(serializer_class, self.request.data or {})


class CapabilityPreviewView(CapabilityScopedMixin, OrgScopedAPIView):
    serializer_class = s.PreviewSerializer
    action_roles = {"POST": Role.VIEWER}

    @extend_schema(
        operation_id="apps_capabilities_preview",
        request=s.EnvironmentInputSerializer,
        responses=s.PreviewSerializer,
        description="Side-effect-free preview of enable: the variant it would choose and why, the fleet by device "
        "class, a per-variant comparison, per-device-class bindings, the assignments and the uncovered devices.",
    )
    def post(self, request, slug, key):
        app, capability, data = self.resolve(s.EnvironmentInputSerializer)
        result = orchestrator.capability_preview(
            organization=self.organization, app=app, capability=capability, environment=data["environment"]
        )
        return Response(s.PreviewSerializer(result).data)


class CapabilityEnableView(CapabilityScopedMixin, OrgScopedAPIView):
    serializer_class = s.EnableSerializer

    @extend_schema(
        operation_id="apps_capabilities_enable",
        request=s.EnvironmentInputSerializer,
        responses={201: s.EnableSerializer, 200: s.EnableSerializer, 409: CONFLICT},
        description="Resolve the best variant, set the slot, create and start a deployment targeting all the app's "
        "devices (synchronous, set-based). 200 with created=false when already enabled and completed; 409 when "
        "a deployment is rolling out or paused in that environment.",
    )
    def post(self, request, slug, key):
        app, capability, data = self.resolve(s.EnvironmentInputSerializer)
        result = orchestrator.capability_enable(
            organization=self.organization, app=app, capability=capability, environment=data["environment"],
            actor=self.principal.actor,
        )
        code = status.HTTP_201_CREATED if result["created"] else status.HTTP_200_OK
        return Response(s.EnableSerializer(result).data, status=code)


class CapabilityCheckOptimizationView(CapabilityScopedMixin, OrgScopedAPIView):
    serializer_class = s.CheckOptimizationSerializer
    action_roles = {"POST": Role.VIEWER}

    @extend_schema(
        operation_id="apps_capabilities_check_optimization",
        request=s.EnvironmentInputSerializer,
        responses=s.CheckOptimizationSerializer,
        description="Compare the deployed variant with the alternatives for the current fleet. No writes.",
    )
    def post(self, request, slug, key):
        app, capability, data = self.resolve(s.EnvironmentInputSerializer)
        result = orchestrator.capability_check_optimization(
            organization=self.organization, app=app, capability=capability, environment=data["environment"]
        )
        return Response(s.CheckOptimizationSerializer(result).data)


class CapabilityOptimizeView(CapabilityScopedMixin, OrgScopedAPIView):
    serializer_class = s.OptimizeSerializer

    @extend_schema(
        operation_id="apps_capabilities_optimize",
        request=s.OptimizeInputSerializer,
        responses={201: s.OptimizeSerializer, 409: CONFLICT},
        description="Start a staged (canary) rollout to the better variant with health gates; 409 when not "
        "enabled, nothing is better, or a rollout is already running.",
    )
    def post(self, request, slug, key):
        app, capability, data = self.resolve(s.OptimizeInputSerializer)
        result = orchestrator.capability_optimize(
            organization=self.organization, app=app, capability=capability, environment=data["environment"],
            actor=self.principal.actor, stages=data.get("stages"),
        )
        return Response(s.OptimizeSerializer(result).data, status=status.HTTP_201_CREATED)


class AppHealthView(AppScopedMixin, OrgScopedAPIView):
    serializer_class = s.AppHealthSerializer

    def scoped_queryset(self):  # pragma: no cover - reads through orchestrator.app_health
        return CapabilityProfile.objects.none()

    @extend_schema(operation_id="apps_health", responses=s.AppHealthSerializer,
                   description="Slot coverage: per slot, target devices vs devices with an installed or active "
                   "assignment for the capability; healthy >= 0.95, degraded, unconfigured, no_targets.")
    def get(self, request, slug):
        return Response(s.AppHealthSerializer(orchestrator.app_health(organization=self.organization, app=self.app)).data)


# --- capability profiles -------------------------------------------------------------------------------------------


class DeviceCapabilityProfileView(DeviceFacingMixin, OrgScopedAPIView):
    serializer_class = s.CapabilityProfileSerializer

    @extend_schema(operation_id="devices_capability_profile", parameters=[DEVICE_PARAM],
                   responses=s.CapabilityProfileSerializer,
                   description="The device's stored profile; when none is stored yet it is computed (not saved).")
    def get(self, request, device):
        device = self.device()
        profile = CapabilityProfile.objects.filter(organization=self.organization, device=device).first()
        if profile is None:
            variants = orchestrator._variants(organization=self.organization)
            row = (device.id, device.platform, device.capabilities, device.hardware, device.os_name)
            _, device_class, scores = next(orchestrator._profiles([row], variants))
            profile = CapabilityProfile(device=device, device_class=device_class, scores=scores,
                                        classifier_version=CLASSIFIER_VERSION, computed_at=timezone.now())
        profile.device = device
        return Response(s.CapabilityProfileSerializer(profile).data)


class CapabilityProfileListView(OrgScopedAPIView):
    results_key = "capability_profiles"
    serializer_class = s.CapabilityProfileSerializer

    def scoped_queryset(self):
        return CapabilityProfile.objects.select_related("device")

    @extend_schema(
        operation_id="capability_profiles_list",
        parameters=[s.ProfileFilterSerializer],
        responses=s.CapabilityProfileSerializer(many=True),
    )
    def get(self, request):
        filters = validated(s.ProfileFilterSerializer, request.query_params)
        profiles = orchestrator.profile_queryset(
            organization=self.organization,
            device_class=filters.get("device_class"),
            variant=filters.get("variant"),
            compatible=filters.get("compatible"),
        )
        return self.paginated(profiles, s.CapabilityProfileSerializer)


# --- routing telemetry ------------------------------------------------------------------------------------------


class RoutingEventsView(OrgScopedAPIView):
    """SDKs report routing decisions: device tokens (for themselves), publishable keys (for their app),
    API keys (any app of the organization)."""

    serializer_class = s.RoutingIngestResultSerializer
    principal_kinds = ("device", "publishable_key", "api_key", "user")
    max_body_bytes = 2 * 1024 * 1024

    def scoped_queryset(self):  # pragma: no cover - writes only
        return RoutingEvent.objects.none()

    def required_role(self, request):
        if self.principal.kind in ("device", "publishable_key"):
            return None
        return super().required_role(request)

    @extend_schema(
        operation_id="routing_events_create",
        request={"application/json": s.ROUTING_BATCH_SCHEMA},
        responses={202: s.RoutingIngestResultSerializer, 413: ErrorSerializer},
        description="Up to 1000 events per batch, as {\"events\": [RoutingEventInput…]} (a bare JSON array is "
        "accepted too). Valid events are stored; invalid ones are listed in `errors` by index.",
    )
    def post(self, request):
        body = request.data
        if isinstance(body, list):
            body = {"events": body}
        data = validated(s.RoutingBatchSerializer, body)
        principal = self.principal
        result = routing.routing_events_ingest(
            organization=self.organization,
            events=data["events"],
            app=principal.extra["app"] if principal.kind == "publishable_key" else None,
            device=principal.device if principal.kind == "device" else None,
        )
        return Response(s.RoutingIngestResultSerializer(result).data, status=status.HTTP_202_ACCEPTED)


class DecisionFilterSerializer(s.serializers.Serializer):
    app = s.serializers.CharField(required=False)
    capability = s.serializers.CharField(required=False)
    route = s.serializers.ChoiceField(choices=Route.choices, required=False)
    device = s.serializers.CharField(required=False, help_text="Device UUID or device_id.")
    success = s.serializers.BooleanField(required=False, allow_null=True, default=None)
    since = s.serializers.DateTimeField(required=False)
    until = s.serializers.DateTimeField(required=False)


class AppDecisionFilterSerializer(DecisionFilterSerializer):
    app = None


def _filter_decisions(events, filters, organization):
    if filters.get("app"):
        events = events.filter(app__slug=filters["app"])
    if filters.get("capability"):
        events = events.filter(capability__key=filters["capability"])
    if filters.get("route"):
        events = events.filter(route=filters["route"])
    if filters.get("device"):
        ref = filters["device"]
        device_ids = Device.objects.filter(organization=organization, device_id=ref).values("id")
        if is_uuid(ref):
            events = events.filter(device_id=ref) | events.filter(device_id__in=device_ids)
        else:
            events = events.filter(device_identifier=ref)
    if filters.get("success") is not None:
        events = events.filter(success=filters["success"])
    if filters.get("since"):
        events = events.filter(ts__gte=filters["since"])
    if filters.get("until"):
        events = events.filter(ts__lt=filters["until"])
    return events


class RoutingDecisionsView(OrgScopedAPIView):
    results_key = "decisions"
    serializer_class = s.RoutingDecisionSerializer

    def scoped_queryset(self):
        return RoutingEvent.objects.select_related("app", "capability")

    @extend_schema(operation_id="routing_decisions_list", parameters=[DecisionFilterSerializer],
                   responses=s.RoutingDecisionSerializer(many=True))
    def get(self, request):
        filters = validated(DecisionFilterSerializer, request.query_params)
        events = _filter_decisions(routing.decision_queryset(organization=self.organization), filters, self.organization)
        return self.paginated(events, s.RoutingDecisionSerializer)


class AppRoutingDecisionsView(AppScopedMixin, OrgScopedAPIView):
    results_key = "decisions"
    serializer_class = s.RoutingDecisionSerializer

    def scoped_queryset(self):
        return RoutingEvent.objects.select_related("app", "capability")

    @extend_schema(operation_id="apps_routing_decisions_list", parameters=[AppDecisionFilterSerializer],
                   responses=s.RoutingDecisionSerializer(many=True))
    def get(self, request, slug):
        app = self.app
        filters = validated(AppDecisionFilterSerializer, request.query_params)
        events = _filter_decisions(routing.decision_queryset(organization=self.organization, app=app), filters,
                                   self.organization)
        return self.paginated(events, s.RoutingDecisionSerializer)


class StatsFilterSerializer(s.StatsWindowSerializer):
    app = s.serializers.CharField(required=False, help_text="App slug.")


class RoutingStatsView(OrgScopedAPIView):
    serializer_class = s.RoutingStatsSerializer

    def scoped_queryset(self):  # pragma: no cover - aggregates only
        return RoutingEvent.objects.none()

    @extend_schema(operation_id="routing_stats", parameters=[StatsFilterSerializer], responses=s.RoutingStatsSerializer)
    def get(self, request):
        filters = validated(StatsFilterSerializer, request.query_params)
        app = None
        if filters.get("app"):
            app = catalog.app_by_slug(organization=self.organization, slug=filters["app"])
            if app is None:
                raise Invalid(f"Unknown app {filters['app']!r}.", field="app")
        stats = routing.routing_stats(organization=self.organization, window=filters["window"], app=app)
        return Response(s.RoutingStatsSerializer(stats).data)


class AppRoutingStatsView(AppScopedMixin, OrgScopedAPIView):
    serializer_class = s.RoutingStatsSerializer

    def scoped_queryset(self):  # pragma: no cover - aggregates only
        return RoutingEvent.objects.none()

    @extend_schema(operation_id="apps_routing_stats", parameters=[s.StatsWindowSerializer],
                   responses=s.RoutingStatsSerializer)
    def get(self, request, slug):
        app = self.app
        filters = validated(s.StatsWindowSerializer, request.query_params)
        stats = routing.routing_stats(organization=self.organization, window=filters["window"], app=app)
        return Response(s.RoutingStatsSerializer(stats).data)


# --- training rounds ----------------------------------------------------------------------------------------------


class TrainingRoundViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Federated training rounds (seed 003)."""

    results_key = "training_rounds"
    serializer_class = s.TrainingRoundSerializer

    @property
    def principal_kinds(self):
        if getattr(self, "action", None) == "participations":
            return ("device", "api_key", "user")
        return ("api_key", "user")

    def required_role(self, request):
        if request.auth.kind == "device":
            return None
        return super().required_role(request)

    def scoped_queryset(self):
        return training.training_round_queryset(organization=self.organization)

    def filter_queryset(self, queryset):
        if getattr(self, "action", None) != "list":
            return queryset
        filters = validated(s.TrainingRoundFilterSerializer, self.request.query_params)
        if filters.get("app"):
            queryset = queryset.filter(app__slug=filters["app"])
        if filters.get("capability"):
            queryset = queryset.filter(capability__key=filters["capability"])
        if filters.get("status"):
            queryset = queryset.filter(status=filters["status"])
        return queryset

    @extend_schema(parameters=[s.TrainingRoundFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=s.TrainingRoundCreateSerializer, responses={201: s.TrainingRoundSerializer})
    def create(self, request):
        data = validated(s.TrainingRoundCreateSerializer, request.data)
        app = catalog.app_by_slug(organization=self.organization, slug=data["app"])
        if app is None:
            raise Invalid(f"Unknown app {data['app']!r}.", field="app")
        capability = catalog.capability_get(key=data["capability"])
        if capability is None:
            raise Invalid(f"Unknown capability {data['capability']!r}.", field="capability")
        created = training.training_round_create(
            organization=self.organization,
            actor=self.principal.actor,
            app=app,
            capability=capability,
            target_selector=data.get("target_selector"),
            min_participants=data["min_participants"],
            deadline=data.get("deadline"),
        )
        return Response(s.TrainingRoundSerializer(self.get_queryset().get(pk=created.pk)).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: s.TrainingRoundSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def close(self, request, id=None):
        training.training_round_close(training_round=self.get_object(), actor=self.principal.actor)
        return Response(s.TrainingRoundSerializer(self.get_queryset().get(pk=id)).data)

    @extend_schema(
        request=s.ParticipationInputSerializer,
        responses={201: s.ParticipationSerializer, 200: s.ParticipationSerializer, 409: CONFLICT},
        description="A device reports its update metadata (idempotent per device: a replay replaces it, 200).",
    )
    # The pagination names the sub-resource's list ("participations"), not the viewset's.
    @action(detail=True, methods=["post"], pagination_class=keyed_pagination("participations"))
    def participations(self, request, id=None):
        training_round = self.get_object()
        data = validated(s.ParticipationInputSerializer, request.data)
        ref = data.get("device_id")
        if self.principal.kind == "device":
            device = self.principal.device
            if ref and ref not in (device.device_id, str(device.id)):
                raise Invalid("A device can only participate for itself.", field="device_id")
        else:
            if not ref:
                raise Invalid("Name the participating device.", field="device_id")
            devices = Device.objects.filter(organization=self.organization)
            device = (devices.filter(id=ref).first() if is_uuid(ref) else None) or devices.filter(device_id=ref).first()
            if device is None:
                raise Invalid("Unknown device.", field="device_id")
        participation, created = training.participation_submit(
            training_round=training_round,
            device=device,
            actor=self.principal.actor,
            num_samples=data["num_samples"],
            metrics=data["metrics"],
            update=data["update"],
        )
        participation.device = device
        return Response(s.ParticipationSerializer(participation).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        operation_id="training_rounds_participations_list",
        responses=s.ParticipationSerializer(many=True),
        description="The round's participations, in submission order.",
    )
    @participations.mapping.get
    def participations_list(self, request, id=None):
        participations = training.participation_queryset(training_round=self.get_object())
        return self.paginated(participations, s.ParticipationSerializer)

