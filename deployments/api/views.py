import json

import django_filters
from django.utils.http import quote_etag
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps_catalog import selectors as catalog
from devices import presence, registry
from devices.api.views import DeviceFacingMixin, DeviceLookupMixin, SteadyPathMixin, steady_json
from fleet.api.errors import ErrorSerializer
from fleet.api.views import OrgScopedAPIView, OrgScopedViewSet, validated
from fleet.errors import Invalid, NotFound

from .. import control, services
from ..models import Deployment, DeploymentStatus, Environment
from ..selectors import assignment_queryset, deployment_progress, deployment_queryset, device_commands
from . import serializers as s


class DeploymentFilter(django_filters.FilterSet):
    app = django_filters.CharFilter(field_name="app__slug")
    capability = django_filters.CharFilter(field_name="capability__key")
    environment = django_filters.ChoiceFilter(choices=Environment.choices)
    status = django_filters.ChoiceFilter(choices=DeploymentStatus.choices)

    class Meta:
        model = Deployment
        fields = ["app", "capability", "environment", "status"]


ACTION_SCHEMA = extend_schema(
    request=s.ActionSerializer,
    responses={200: s.DeploymentDetailSerializer, 409: OpenApiResponse(ErrorSerializer, "Illegal transition.")},
)


class DeploymentViewSet(mixins.ListModelMixin, OrgScopedViewSet):
    """Model rollouts: create, inspect, and drive through their lifecycle."""

    results_key = "deployments"
    serializer_class = s.DeploymentSerializer
    filterset_class = DeploymentFilter

    def scoped_queryset(self):
        return deployment_queryset(organization=self.organization)

    def _detail(self, deployment):
        deployment.progress = deployment_progress(deployment=deployment)
        return Response(s.DeploymentDetailSerializer(deployment).data)

    @extend_schema(responses=s.DeploymentDetailSerializer)
    def retrieve(self, request, id=None):
        return self._detail(self.get_object())

    @extend_schema(request=s.DeploymentCreateSerializer, responses={201: s.DeploymentDetailSerializer})
    def create(self, request):
        data = validated(s.DeploymentCreateSerializer, request.data)
        capability = catalog.capability_get(key=data["capability"])
        if capability is None:
            raise Invalid(f"Unknown capability {data['capability']!r}.", field="capability")
        variant = catalog.variant_get(organization=self.organization, variant_id=data["variant_id"])
        if variant is None:
            raise Invalid("Unknown variant.", field="variant_id")
        app = None
        if data.get("app"):
            app = catalog.app_by_slug(organization=self.organization, slug=data["app"])
            if app is None:
                raise Invalid(f"Unknown app {data['app']!r}.", field="app")
        deployment = services.deployment_create(
            organization=self.organization,
            actor=self.principal.actor,
            app=app,
            capability=capability,
            variant=variant,
            environment=data["environment"],
            targeting=data["targeting"],
            strategy=data["strategy"],
            bindings=data.get("bindings"),
        )
        deployment.progress = deployment_progress(deployment=deployment)
        return Response(s.DeploymentDetailSerializer(deployment).data, status=status.HTTP_201_CREATED)

    def _act(self, name):
        deployment = self.get_object()
        data = validated(s.ActionSerializer, self.request.data or {})
        kwargs = {"reason": data["reason"]} if name == "rollback" else {}
        deployment = services.ACTIONS[name](deployment=deployment, actor=self.principal.actor, **kwargs)
        return self._detail(deployment_queryset(organization=self.organization).get(pk=deployment.pk))

    @ACTION_SCHEMA
    @action(detail=True, methods=["post"])
    def start(self, request, id=None):
        return self._act("start")

    @ACTION_SCHEMA
    @action(detail=True, methods=["post"])
    def pause(self, request, id=None):
        return self._act("pause")

    @ACTION_SCHEMA
    @action(detail=True, methods=["post"])
    def resume(self, request, id=None):
        return self._act("resume")

    @ACTION_SCHEMA
    @action(detail=True, methods=["post"])
    def promote(self, request, id=None):
        return self._act("promote")

    @ACTION_SCHEMA
    @action(detail=True, methods=["post"])
    def rollback(self, request, id=None):
        return self._act("rollback")

    @ACTION_SCHEMA
    @action(detail=True, methods=["post"])
    def cancel(self, request, id=None):
        return self._act("cancel")


class DeploymentDevicesView(OrgScopedAPIView):
    """The devices a deployment targets, with their assignment state."""

    results_key = "assignments"
    serializer_class = s.DeploymentSerializer

    def scoped_queryset(self):
        return deployment_queryset(organization=self.organization)

    @extend_schema(operation_id="deployments_devices", responses=s.AssignmentSerializer(many=True))
    def get(self, request, id):
        return self.paginated(assignment_queryset(deployment=self.get_object()), s.AssignmentSerializer)


class AppDeploymentsView(OrgScopedAPIView):
    """Seed 004: the deployments of one app, addressed by its slug."""

    results_key = "deployments"
    serializer_class = s.DeploymentSerializer
    filterset_class = DeploymentFilter

    def scoped_queryset(self):
        return deployment_queryset(organization=self.organization)

    def get(self, request, slug):
        app = catalog.app_by_slug(organization=self.organization, slug=slug)
        if app is None:
            raise NotFound("No such app.")
        deployments = self.filter_queryset(self.get_queryset().filter(app=app))
        return self.paginated(deployments, s.DeploymentSerializer)


# --- the control loop ---------------------------------------------------------------------------------------


def _etag(device_id, revision):
    return quote_etag(f"{device_id}-{revision}")


class DesiredLeaseMixin(SteadyPathMixin):
    """The desired state's steady paths: a `DESIRED` lease (devices.presence) holds what
    control.desired_state_steady verified, valid while the organization's generation is unchanged."""

    def desired_steady(self, *, secret_hash, device_ref, now, poll):
        steady = control.desired_state_steady(secret_hash=secret_hash, device_ref=device_ref, now=now)
        if steady is not None and poll is not None:
            poll.write(kind=presence.DESIRED, fields=steady.lease())
        return steady

    def desired_query(self, *, now, returns, checks=None):
        return {"kind": presence.DESIRED, "checks": checks, "published": control.PUBLISHED_GENERATION,
                "pending": presence.USES, "entry": presence.use_entry(now=now), "returns": returns}


class DesiredStateView(DesiredLeaseMixin, DeviceFacingMixin, OrgScopedAPIView):
    """Hot path. A device polling with the ETag it holds, when nothing its desired state is computed
    from has changed (deployments.freshness), gets its 304 from its lease in Redis, or else from two
    statements (the steady path)."""

    serializer_class = s.DesiredStateSerializer

    def steady_input(self, request):
        etag = request.META.get("HTTP_IF_NONE_MATCH")
        return {"etag": etag} if etag else None

    def steady(self, request, *, secret_hash, device_ref, now, poll, etag):
        steady = self.desired_steady(secret_hash=secret_hash, device_ref=device_ref, now=now, poll=poll)
        if steady is None:
            return None
        return self._not_modified(device_id=steady.device_id, revision=steady.revision, etag=etag)

    def presence_query(self, *, now, etag):
        return self.desired_query(now=now, returns=("device", "revision"))

    def presence_answer(self, values, *, now, etag):
        return self._not_modified(device_id=values["device"], revision=int(values["revision"]), etag=etag)

    def _not_modified(self, *, device_id, revision, etag):
        current = _etag(device_id, revision)
        if etag not in (current, f"W/{current}"):
            return None  # the content is needed: the full path computes it
        return self.steady_response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": current})

    @extend_schema(
        operation_id="devices_desired_state",
        description="The models, binding and policy the device should run, with an `ETag`; send it back as "
        "`If-None-Match` to get 304 while nothing changed. The revision increases only when the content does.",
        parameters=[OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER, required=False)],
        responses={200: s.DesiredStateSerializer, 304: OpenApiResponse(description="Unchanged since the ETag.")},
    )
    def get(self, request, device):
        device = self.device()
        desired, _, state = control.desired_state(device=device, organization=self.organization)
        etag = _etag(device.id, state.revision)
        if request.headers.get("If-None-Match") in (etag, f"W/{etag}"):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        return Response(s.DesiredStateSerializer(desired).data, headers={"ETag": etag})


class ObservedStateView(DeviceFacingMixin, OrgScopedAPIView):
    serializer_class = s.ObservedStateResultSerializer

    @extend_schema(
        operation_id="devices_observed_state", request=s.ObservedStateSerializer, responses=s.ObservedStateResultSerializer
    )
    def post(self, request, device):
        device = self.device()
        data = validated(s.ObservedStateSerializer, request.data)
        if data.get("inventory"):
            from devices import services as device_services

            device_services.device_inventory_update(device=device, actor=self.principal.actor, inventory=data["inventory"])
        result = control.observed_state_apply(
            device=device,
            organization=self.organization,
            actor=self.principal.actor,
            revision=data.get("revision"),
            models=[{**m, "variant_id": str(m["variant_id"])} for m in data["models"]],
        )
        return Response(s.ObservedStateResultSerializer(result).data)


class SyncView(DesiredLeaseMixin, DeviceFacingMixin, OrgScopedAPIView):
    """Hot path. A sync that only asks whether the revision it holds is current, from a device with
    nothing waiting for it, is answered by the steady path when nothing changed (two statements)."""

    serializer_class = s.SyncResultSerializer
    steady_method = "POST"
    steady_fields = {"known_revision", "acked_directives"}

    def steady_input(self, request):
        body = steady_json(request, limit=4096)
        if body is None or not body.keys() <= self.steady_fields or body.get("acked_directives", []) != []:
            return None
        revision = body.get("known_revision")
        # What the serializer keeps as is (it would also coerce "3" or 3.0: the full path's business).
        if type(revision) is not int or revision < 0:
            return None
        return {"known_revision": revision}

    def steady(self, request, *, secret_hash, device_ref, now, poll, known_revision):
        steady = self.desired_steady(secret_hash=secret_hash, device_ref=device_ref, now=now, poll=poll)
        if steady is None or steady.attention or steady.revision != known_revision:
            return None  # directives may wait, or the desired state is needed: the full path
        return self._unchanged(revision=steady.revision, drift=steady.drift, drifted=steady.drifted,
                               interval=steady.heartbeat_interval_s)

    def presence_query(self, *, now, known_revision):
        return self.desired_query(now=now, checks={"attention": False, "revision": known_revision},
                                  returns=("drift", "drifted", "interval"))

    def presence_answer(self, values, *, now, known_revision):
        return self._unchanged(revision=known_revision, drift=values["drift"] == "1",
                               drifted=json.loads(values["drifted"]), interval=int(values["interval"]))

    def _unchanged(self, *, revision, drift, drifted, interval):
        quiet = registry.quiet_heartbeat()
        return self.steady_response({
            "unchanged": True, "revision": revision, "directives": quiet["directives"],
            "drift": {"drift": drift, "drifted": drifted}, "next_sync_in_s": interval,
            "pending_round_id": quiet["pending_round_id"], "message": quiet["message"],
        })

    @extend_schema(
        operation_id="devices_sync",
        description="Report (observed state, inventory, acknowledged directives) and receive, in one call, the "
        "drift, directives and, unless `known_revision` is current, the desired state.",
        request=s.SyncSerializer,
        responses=s.SyncResultSerializer,
    )
    def post(self, request, device):
        device = self.device()
        data = validated(s.SyncSerializer, request.data)
        observed = data.get("observed_state")
        if observed is not None:
            observed = {**observed, "models": [{**m, "variant_id": str(m["variant_id"])} for m in observed["models"]]}
            if observed.get("inventory") and not data.get("inventory"):
                data["inventory"] = observed["inventory"]
        result = control.device_sync(
            device=device,
            organization=self.organization,
            actor=self.principal.actor,
            known_revision=data.get("known_revision"),
            observed_state=observed,
            inventory=data.get("inventory"),
            acked_directives=[str(i) for i in data["acked_directives"]],
        )
        return Response(s.SyncResultSerializer(result).data)


class DeviceCommandsView(DeviceLookupMixin, OrgScopedAPIView):
    """Seed 001: commands queued for a device, delivered as directives in heartbeat and sync."""

    results_key = "commands"
    serializer_class = s.CommandSerializer

    @extend_schema(operation_id="devices_commands_list", responses=s.CommandSerializer(many=True))
    def get(self, request, device):
        device = self.device()
        return self.paginated(device_commands(organization=self.organization, device=device), s.CommandSerializer)

    @extend_schema(
        operation_id="devices_commands_create", request=s.CommandCreateSerializer, responses={201: s.CommandSerializer}
    )
    def post(self, request, device):
        device = self.device()
        data = validated(s.CommandCreateSerializer, request.data)
        command = control.command_create(
            device=device,
            organization=self.organization,
            actor=self.principal.actor,
            type=data["type"],
            payload=data["payload"],
            expires_in_s=data["expires_in_s"],
        )
        return Response(s.CommandSerializer(command).data, status=status.HTTP_201_CREATED)
