"""Thin views: resolve the device (404 first), validate input, call a service, render output."""

import json
import uuid

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from fleet.api import throttling
from fleet.api.authentication import bearer_token
from fleet.api.errors import ErrorSerializer
from fleet.api.views import OrgScopedAPIView, OrgScopedViewSet, is_uuid, validated
from fleet.errors import Invalid, PayloadTooLarge
from fleet.tenancy import credentials
from fleet.tenancy.models import Role

from .. import presence, registry, selectors, services, validation
from ..models import Connectivity, Device, DeviceGroup, DeviceToken
from . import serializers as s
from .filters import DeviceFilter
from .parsers import JpegParser

DEVICE_PARAM = OpenApiParameter(
    "device", OpenApiTypes.STR, OpenApiParameter.PATH, description="The device's UUID `id` or its `device_id`."
)
LABEL_PARAM = OpenApiParameter(
    "label",
    {"type": "object", "additionalProperties": {"type": "string"}},
    OpenApiParameter.QUERY,
    style="deepObject",
    explode=True,
    description="Label selector in bracket notation, repeatable: `label[site]=berlin&label[tier]=edge` (all must match).",
)
FRAME_CACHE_SECONDS = 5
MULTIPART_SLACK_BYTES = 64 * 1024


class DeviceLookupMixin:
    """`{device}` is the UUID or the device_id; a device principal may address only itself."""

    lookup_fields = ("id", "device_id")
    lookup_url_kwarg = "device"
    model = Device

    def scoped_queryset(self):
        queryset = selectors.device_queryset(organization=self.organization)
        if self.principal.kind == "device":
            queryset = queryset.filter(pk=self.principal.device.pk)
        return queryset

    def device(self):
        principal = self.principal
        if principal.kind == "device":  # already loaded by authentication: no query
            value = self.kwargs[self.lookup_url_kwarg]
            own = principal.device
            if value == own.device_id or (is_uuid(value) and uuid.UUID(value) == own.id):
                return own
            raise NotFound("No such device.")
        return self.get_object()


class DeviceFacingMixin(DeviceLookupMixin):
    """Endpoints a device calls with its own token (API keys and users may call them too)."""

    principal_kinds = ("device", "api_key", "user")

    def required_role(self, request):
        if self.principal.kind == "device":
            return None  # scoped to itself by DeviceLookupMixin
        return super().required_role(request)


class DeviceViewSet(DeviceLookupMixin, mixins.ListModelMixin, OrgScopedViewSet):
    """Devices of the caller's organization."""

    results_key = "devices"
    serializer_class = s.DeviceSerializer
    filterset_class = DeviceFilter
    action_roles = {"destroy": Role.ADMIN}

    def required_role(self, request):
        if self.principal.kind == "publishable_key":
            return None  # only the register action admits these keys, for their own app
        return super().required_role(request)

    @extend_schema(
        operation_id="devices_list",
        parameters=[LABEL_PARAM],
        responses={200: s.DeviceSerializer(many=True), 404: ErrorSerializer},
        description="404 when `org_id` names another organization (seed 003 accepts the parameter).",
    )
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self._serialize(page, many=True))

    def _serialize(self, devices, many=False):
        devices = list(devices) if many else [devices]
        enrichments = registry.enrichments(organization=self.organization, devices=devices)
        serializer = s.DeviceSerializer(devices, many=True, context={"enrichments": enrichments})
        return serializer.data if many else serializer.data[0]

    @extend_schema(
        operation_id="devices_register",
        request=s.DeviceRegisterSerializer,
        responses={201: s.DeviceRegisteredSerializer, 200: s.DeviceRegisteredSerializer, 409: ErrorSerializer},
        description="Register a device, or re-register it (200: same id, fields updated, a new api_key; the "
        "previous token stops working). Revoked devices get 409.",
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="register",
        filterset_class=None,
        pagination_class=None,
        principal_kinds=("api_key", "user", "publishable_key"),
    )
    def register(self, request):
        data = dict(validated(s.DeviceRegisterSerializer, request.data))
        platform = data.get("platform") or Device._meta.get_field("platform").default
        data["app"], data["app_target"] = services.app_link_resolve(
            organization=self.organization,
            platform=platform,
            app_slug=data.pop("app", None),
            app_identifier=data.pop("app_identifier", None),
            app=self.principal.extra.get("app") if self.principal.kind == "publishable_key" else None,
        )
        device, secret, created = services.device_register(
            organization=self.organization, actor=self.principal.actor, **data
        )
        body = s.DeviceRegisteredSerializer(
            {
                "id": device.id,
                "device_id": device.device_id,
                "api_key": secret,
                "platform": device.platform,
                "status": device.status,
                "created_at": device.created_at,
            }
        ).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(operation_id="devices_summary", responses=s.DeviceSummarySerializer)
    @action(detail=False, methods=["get"], url_path="summary", filterset_class=None, pagination_class=None)
    def summary(self, request):
        summary = selectors.device_summary(organization=self.organization)
        body = dict(s.DeviceSummarySerializer(summary).data)
        body.update({key: value for key, value in summary.items() if key not in body})  # providers' extra fields
        return Response(body)

    @extend_schema(operation_id="devices_retrieve", parameters=[DEVICE_PARAM], responses=s.DeviceSerializer)
    def retrieve(self, request, device=None):
        return Response(self._serialize(self.device()))

    @extend_schema(
        operation_id="devices_update",
        parameters=[DEVICE_PARAM],
        request=s.DeviceUpdateSerializer,
        responses={200: s.DeviceSerializer, 409: ErrorSerializer},
    )
    def partial_update(self, request, device=None):
        target = self.device()
        data = validated(s.DeviceUpdateSerializer, request.data)
        target = services.device_update(device=target, actor=self.principal.actor, **data)
        return Response(self._serialize(target))

    @extend_schema(operation_id="devices_delete", parameters=[DEVICE_PARAM], responses={204: None, 409: ErrorSerializer})
    def destroy(self, request, device=None):
        services.device_delete(device=self.device(), actor=self.principal.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="devices_bulk_labels",
        request=s.BulkLabelsSerializer,
        responses={200: s.BulkLabelsResultSerializer, 400: ErrorSerializer},
        description="Set and remove labels on every device of a target (device_ids, a group, or a selector) in "
        "set-based SQL. Group memberships and deployments follow in the same transaction. The whole request is "
        "rejected (400) when any device would end with more than 64 labels.",
    )
    @action(detail=False, methods=["post"], url_path="bulk/labels", filterset_class=None, pagination_class=None)
    def bulk_labels(self, request):
        data = validated(s.BulkLabelsSerializer, request.data)
        result = services.devices_bulk_labels(
            organization=self.organization, actor=self.principal.actor, target=data["target"],
            set_labels=data["set"], remove=data["remove"],
        )
        return Response(s.BulkLabelsResultSerializer(result).data)

    @extend_schema(operation_id="devices_revoke", parameters=[DEVICE_PARAM], request=None, responses=s.DeviceSerializer)
    @action(detail=True, methods=["post"], url_path="revoke", filterset_class=None)
    def revoke(self, request, device=None):
        target = services.device_revoke(device=self.device(), actor=self.principal.actor)
        return Response(self._serialize(target))


class DeviceActivityView(DeviceLookupMixin, OrgScopedAPIView):
    """The device's activity feed, newest first (`?order=asc` for chronological)."""

    results_key = "events"
    serializer_class = s.DeviceRefSerializer

    @extend_schema(
        operation_id="devices_activity",
        parameters=[
            DEVICE_PARAM,
            OpenApiParameter("order", OpenApiTypes.STR, enum=["asc", "desc"], description="Default desc (newest first)."),
        ],
        responses=s.DeviceActivityEventSerializer(many=True),
    )
    def get(self, request, device):
        target = self.device()
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise ValidationError({"order": ["Must be asc or desc."]})
        events = selectors.device_activity(organization=self.organization, device=target, ascending=order == "asc")
        return self.paginated(events, s.DeviceActivityEventSerializer)


class DeviceUsersView(DeviceLookupMixin, OrgScopedAPIView):
    """End users observed on the device, most recently seen first."""

    results_key = "users"
    serializer_class = s.DeviceRefSerializer

    @extend_schema(
        operation_id="devices_users", parameters=[DEVICE_PARAM], responses=s.DeviceUserRefSerializer(many=True)
    )
    def get(self, request, device):
        target = self.device()
        return self.paginated(
            selectors.device_users(organization=self.organization, device=target), s.DeviceUserRefSerializer
        )


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")  # as DRF's strict JSON parser


def steady_json(request, *, limit):
    """The request's body as a steady path may read it: a JSON object, exactly as DRF's strict parser
    would accept it, at most `limit` bytes; {} when there is no body. None otherwise: the full path
    then answers, with its errors."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length == 0:
        return {}
    if length > limit or request.content_type != "application/json":
        return None
    if request.content_params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        return None
    try:
        body = json.loads(request.body.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class SteadyPathMixin:
    """A device's most frequent request, answered before DRF's request cycle when nothing needs the
    full path (a view's `steady` returns None otherwise, and the full path answers in the same
    transaction). Only a well-formed device token, no query string and JSON or no content
    negotiation qualify; the request is counted by the same rate limit, once.

    With presence (devices.presence), a lease in Redis answers first (`presence_query`, then
    `presence_answer`), without PostgreSQL: the request's transaction, which ATOMIC_REQUESTS opens
    for every other view, starts only when PostgreSQL is needed. On a miss `steady` runs and, when
    it succeeds, writes the lease through the `poll` it is given.
    """

    steady_method = "GET"
    steady_accept = ("", "*/*", "application/json")  # anything else is content negotiation: full path

    @classmethod
    def as_view(cls, **initkwargs):
        return transaction.non_atomic_requests(super().as_view(**initkwargs))

    def dispatch(self, request, *args, **kwargs):
        steady = self._steady_request(request, device_ref=kwargs["device"])
        if steady is not None and steady["poll"] is not None and steady["poll"].values is not None:
            response = self.presence_answer(steady["poll"].values, now=steady["now"], **steady["data"])
            if response is not None:
                return response  # from the lease: no database connection at all
            steady = None  # the lease says the content is needed: the full path
        with transaction.atomic():  # what ATOMIC_REQUESTS opens for every other view
            if steady is not None:
                data = steady.pop("data")
                response = self.steady(request, **steady, **data)
                if response is not None:
                    return response
            return super().dispatch(request, *args, **kwargs)

    def _steady_request(self, request, *, device_ref):
        """The steady path's arguments, the request counted (and its lease polled, with presence); None
        when only the full path can answer."""
        if (request.method != self.steady_method or request.META.get("QUERY_STRING")
                or request.META.get("HTTP_ACCEPT", "") not in self.steady_accept):
            return None
        secret = bearer_token(request)
        if secret is None or not credentials.is_well_formed(secret=secret, prefix=DeviceToken.PREFIX):
            return None
        data = self.steady_input(request)
        if data is None:
            return None
        secret_hash = credentials.hash_secret(secret)
        rate_key = services.device_token_rate_key(secret_hash=secret_hash)
        now = timezone.now()
        poll = None
        if presence.enabled():
            key, limit, window, left = throttling.window_of(view=self, scope="device", ident=rate_key)
            poll = presence.poll(secret_hash=secret_hash, device_ref=device_ref, counter=throttling.redis_key(key),
                                 limit=limit, window=window, **self.presence_query(now=now, **data))
            allowed, _ = throttling.record(request, count=poll.count, limit=limit, left=left)
        else:
            allowed, _ = throttling.admit(request, view=self, scope="device", ident=rate_key)
        if not allowed:
            return None  # the full path answers 429 from the same count
        return {"secret_hash": secret_hash, "device_ref": device_ref, "now": now, "poll": poll, "data": data}

    def steady_input(self, request):
        """The keyword arguments of `steady`, when the full path would accept the request as sent."""
        return {}

    def steady(self, request, *, secret_hash, device_ref, now, poll, **data):
        raise NotImplementedError

    def presence_query(self, *, now, **data):
        """What devices.presence.poll asks of this request's lease: kind, checks, published, pending, entry
        and returns."""
        raise NotImplementedError

    def presence_answer(self, values, *, now, **data):
        """The answer from a lease's `values`, or None for the full path."""
        raise NotImplementedError

    def steady_response(self, body=None, *, status=200, headers=None):
        content = b"" if body is None else JSONRenderer().render(body)
        response = HttpResponse(content, status=status, content_type="application/json",
                                headers={**self.default_response_headers, **(headers or {})})
        if not content:
            del response["Content-Type"]  # as DRF renders an empty body
        return response


class DeviceHeartbeatView(SteadyPathMixin, DeviceFacingMixin, OrgScopedAPIView):
    """Hot path. The steady state (an online device repeating itself) takes two statements, without
    DRF's machinery; every other heartbeat, errors included, takes the full path: credential
    function + token/device select + one UPDATE."""

    serializer_class = s.HeartbeatResponseSerializer
    defers_device_token_touch = True  # folded into the heartbeat's UPDATE
    steady_method = "PUT"
    max_body_bytes = 256 * 1024  # 50 users and 37 metrics fit many times over

    def steady_input(self, request):
        """The heartbeat's fields: status, metrics and agent_version at most (users take the full path)."""
        body = steady_json(request, limit=self.max_body_bytes)
        if body is None or "users" in body:
            return None
        data = {}
        if "status" in body:
            if body["status"] not in services.HEARTBEAT_STATUSES:
                return None
            data["status"] = body["status"]
        if "metrics" in body:
            try:
                data["metrics"] = validation.validate_metrics(body["metrics"])
            except Invalid:
                return None
        if "agent_version" in body:
            version = body["agent_version"]
            # What the serializer keeps as is: a printable string of at most 64 characters, not padded.
            if not (isinstance(version, str) and 0 < len(version) <= 64 and version == version.strip()
                    and version.isprintable()):
                return None
            data["agent_version"] = version
        return data

    def steady(self, request, *, secret_hash, device_ref, now, poll, **data):
        """The steady-state heartbeat (services.device_heartbeat_steady), or None for the full path."""
        row = services.device_heartbeat_steady(secret_hash=secret_hash, device_ref=device_ref, now=now, **data)
        if row is None:
            return None
        if poll is not None:
            poll.write(kind=presence.HEARTBEAT, fields=row.lease())
        return self._steady_answer(status=row.status, interval=row.heartbeat_interval_s, now=now)

    def presence_query(self, *, now, status=None, metrics=None, agent_version=None):
        checks = {name: value for name, value in (("status", status), ("agent", agent_version)) if value is not None}
        return {"kind": presence.HEARTBEAT, "checks": checks, "pending": presence.BEATS,
                "returns": ("status", "interval"),
                "entry": presence.beat_entry(now=now, status=status, agent_version=agent_version, metrics=metrics)}

    def presence_answer(self, values, *, now, **data):
        return self._steady_answer(status=values["status"], interval=int(values["interval"]), now=now)

    def _steady_answer(self, *, status, interval, now):
        return self.steady_response({
            "status": status,
            "last_heartbeat": now,
            "connectivity_status": Connectivity.ONLINE,
            "next_heartbeat_in_s": interval,
            **registry.quiet_heartbeat(),
        })

    @extend_schema(
        operation_id="devices_heartbeat",
        description="Report that the device is alive, with its status, metrics, agent version and signed-in "
        "users (each optional). The answer gives the interval until the next heartbeat and carries directives "
        "and a pending training round when any wait for the device.",
        parameters=[DEVICE_PARAM],
        request=s.HeartbeatSerializer,
        responses={200: s.HeartbeatResponseSerializer, 409: ErrorSerializer},
    )
    def put(self, request, device):
        target = self.device()
        data = validated(s.HeartbeatSerializer, request.data)
        target = services.device_heartbeat(
            device=target,
            actor=self.principal.actor,
            touch_token=self.principal.extra.get("device_token"),
            **data,
        )
        body = {
            "status": target.status,
            "last_heartbeat": target.last_heartbeat,
            "connectivity_status": target.connectivity_status,
            "next_heartbeat_in_s": target.heartbeat_interval_s,
            **registry.heartbeat_contributions(device=target, organization=self.organization),
        }
        return Response(body)  # already the documented shape: a serializer pass costs more than the UPDATE


class DeviceHealthView(DeviceFacingMixin, OrgScopedAPIView):
    serializer_class = s.DeviceHealthSerializer

    @extend_schema(
        operation_id="devices_health",
        parameters=[DEVICE_PARAM],
        responses=s.DeviceHealthSerializer,
        description="Connectivity, last heartbeat and latest metrics; later apps add fields (drift, failing "
        "assignments) through the devices registry.",
    )
    def get(self, request, device):
        target = self.device()
        body = dict(s.DeviceHealthSerializer(target).data)
        body.update(registry.health_contributions(device=target, organization=self.organization))
        return Response(body)


class DeviceFramesView(DeviceFacingMixin, OrgScopedAPIView):
    serializer_class = s.FrameSerializer
    parser_classes = [JpegParser, MultiPartParser]

    @property
    def max_body_bytes(self):
        return settings.FRAME_MAX_BYTES + MULTIPART_SLACK_BYTES

    @extend_schema(
        operation_id="devices_frames_upload",
        parameters=[DEVICE_PARAM],
        request={"image/jpeg": OpenApiTypes.BINARY, "multipart/form-data": s.FrameUploadSerializer},
        responses={201: s.FrameSerializer, 409: ErrorSerializer},
        description="Upload the latest camera frame (JPEG, at most FRAME_MAX_BYTES, default 5 MB) as an "
        "`image/jpeg` body or multipart field `frame`. Replaces the previous frame.",
    )
    def post(self, request, device):
        target = self.device()
        content = self._frame_bytes(request)
        target = services.device_frame_upload(device=target, actor=self.principal.actor, content=content)
        body = {
            "captured_at": target.frame_captured_at,
            "size_bytes": target.frame_size_bytes,
            "width": target.frame_width,
            "height": target.frame_height,
        }
        return Response(s.FrameSerializer(body).data, status=status.HTTP_201_CREATED)

    @staticmethod
    def _frame_bytes(request):
        data = request.data  # 415 here for other content types
        if isinstance(data, bytes):
            return data
        upload = request.FILES.get("frame") if hasattr(request, "FILES") else None
        if upload is None:
            raise ValidationError({"frame": ["Send the JPEG as an image/jpeg body or a multipart field `frame`."]})
        if upload.size > settings.FRAME_MAX_BYTES:
            limit = settings.FRAME_MAX_BYTES
            raise PayloadTooLarge(f"A frame is at most {limit} bytes.", fields={"frame": [f"At most {limit} bytes."]})
        return upload.read()


class DeviceFrameLatestView(DeviceFacingMixin, OrgScopedAPIView):
    serializer_class = s.FrameSerializer

    @extend_schema(
        operation_id="devices_frames_latest",
        parameters=[
            DEVICE_PARAM,
            OpenApiParameter("If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False),
        ],
        responses={
            (200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description="The latest frame."),
            304: OpenApiResponse(description="Unchanged since the ETag sent in If-None-Match."),
        },
    )
    def get(self, request, device):
        target = self.device()
        content = services.device_frame_read(device=target)
        if content is None:
            raise NotFound("This device has no frame.")
        etag = f'"{target.frame_etag}"'
        headers = {
            "ETag": etag,
            "Last-Modified": http_date(target.frame_captured_at.timestamp()),
            "Cache-Control": f"private, max-age={FRAME_CACHE_SECONDS}",
        }
        if _etag_matches(request.META.get("HTTP_IF_NONE_MATCH", ""), etag):
            return HttpResponse(status=304, headers=headers)
        return HttpResponse(content, content_type="image/jpeg", headers=headers)


def _etag_matches(header, etag):
    if not header:
        return False
    candidates = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in candidates or etag in candidates


class EndUserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """End users seen on the organization's devices (reported by agents)."""

    results_key = "users"
    serializer_class = s.UserRefSerializer
    lookup_url_kwarg = "user"

    def scoped_queryset(self):
        return selectors.end_user_queryset(organization=self.organization)

    @extend_schema(
        operation_id="users_retrieve",
        parameters=[OpenApiParameter("user", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The end user's id.")],
    )
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)


# --- device groups ---------------------------------------------------------------------------------
GROUP_PARAM = OpenApiParameter(
    "group", OpenApiTypes.STR, OpenApiParameter.PATH, description="The group's UUID `id` or its `slug`."
)


class DeviceGroupViewSet(mixins.ListModelMixin, OrgScopedViewSet):
    """Device groups: dynamic (a label selector, materialized) or static (explicit members)."""

    results_key = "device_groups"
    serializer_class = s.DeviceGroupSerializer
    lookup_fields = ("id", "slug")
    lookup_url_kwarg = "group"
    model = DeviceGroup
    filterset_class = None

    def scoped_queryset(self):
        return selectors.group_queryset(organization=self.organization)

    @extend_schema(operation_id="device_groups_list")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        operation_id="device_groups_create",
        request=s.DeviceGroupCreateSerializer,
        responses={201: s.DeviceGroupSerializer, 400: ErrorSerializer, 409: ErrorSerializer},
    )
    def create(self, request):
        data = validated(s.DeviceGroupCreateSerializer, request.data)
        group = services.device_group_create(organization=self.organization, actor=self.principal.actor, **data)
        return Response(s.DeviceGroupSerializer(group).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="device_groups_retrieve", parameters=[GROUP_PARAM])
    def retrieve(self, request, group=None):
        return Response(s.DeviceGroupSerializer(self.get_object()).data)

    @extend_schema(
        operation_id="device_groups_update",
        parameters=[GROUP_PARAM],
        request=s.DeviceGroupUpdateSerializer,
        responses={200: s.DeviceGroupSerializer, 400: ErrorSerializer, 409: ErrorSerializer},
    )
    def partial_update(self, request, group=None):
        target = self.get_object()
        data = validated(s.DeviceGroupUpdateSerializer, request.data)
        target = services.device_group_update(group=target, actor=self.principal.actor, **data)
        return Response(s.DeviceGroupSerializer(target).data)

    @extend_schema(operation_id="device_groups_delete", parameters=[GROUP_PARAM], responses={204: None})
    def destroy(self, request, group=None):
        services.device_group_delete(group=self.get_object(), actor=self.principal.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="device_groups_preview",
        request=s.GroupPreviewSerializer,
        responses={200: s.GroupPreviewResultSerializer, 400: ErrorSerializer},
        description="Dry run: how many devices a selector matches now (revoked and archived devices excluded, as "
        "in dynamic groups) and up to 10 of them. Writes nothing.",
    )
    @action(detail=False, methods=["post"], url_path="preview", pagination_class=None)
    def preview(self, request):
        data = validated(s.GroupPreviewSerializer, request.data)
        result = services.device_group_preview(organization=self.organization, selector=data["selector"])
        return Response(s.GroupPreviewResultSerializer(result).data)

    @extend_schema(
        operation_id="device_groups_members_add",
        parameters=[GROUP_PARAM],
        request=s.DeviceIdsSerializer,
        responses={200: s.MembersChangedSerializer, 400: ErrorSerializer, 409: ErrorSerializer},
        description="Add devices to a static group (dynamic groups: 409). Unknown or foreign ids: 400 listing "
        "them, nothing changed.",
    )
    @action(detail=True, methods=["post"], url_path="members", pagination_class=None)
    def members(self, request, group=None):
        target = self.get_object()
        data = validated(s.DeviceIdsSerializer, request.data)
        added = services.device_group_members_add(group=target, actor=self.principal.actor, device_refs=data["device_ids"])
        return Response({"added": added, "member_count": target.member_count})

    @extend_schema(
        operation_id="device_groups_members_remove",
        parameters=[GROUP_PARAM],
        request=s.DeviceIdsSerializer,
        responses={200: s.MembersChangedSerializer, 400: ErrorSerializer, 409: ErrorSerializer},
        description="Remove devices from a static group (same body as adding).",
    )
    @members.mapping.delete
    def members_remove(self, request, group=None):
        target = self.get_object()
        data = validated(s.DeviceIdsSerializer, request.data)
        removed = services.device_group_members_remove(
            group=target, actor=self.principal.actor, device_refs=data["device_ids"]
        )
        return Response({"removed": removed, "member_count": target.member_count})


class DeviceGroupDevicesView(OrgScopedAPIView):
    """The group's member devices: same filters, pagination and shape as GET /devices."""

    results_key = "devices"
    serializer_class = s.DeviceSerializer
    filterset_class = DeviceFilter
    model = Device

    def scoped_queryset(self):
        return selectors.device_queryset(organization=self.organization)

    @extend_schema(operation_id="device_groups_devices", parameters=[GROUP_PARAM, LABEL_PARAM])
    def get(self, request, group):
        target = selectors.group_by_ref(organization=self.organization, ref=group)
        if target is None:
            raise NotFound("No such device group.")
        members = selectors.group_member_ids(organization=self.organization, group_ids=[target.id])
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset().filter(id__in=members)))
        devices = list(page)
        enrichments = registry.enrichments(organization=self.organization, devices=devices)
        return self.get_paginated_response(
            s.DeviceSerializer(devices, many=True, context={"enrichments": enrichments}).data
        )


class DeviceGroupsOfDeviceView(DeviceLookupMixin, OrgScopedAPIView):
    """The groups a device belongs to, and why (selector or static): the device's Groups panel."""

    results_key = "groups"
    serializer_class = s.DeviceGroupMembershipSerializer

    @extend_schema(operation_id="devices_groups", parameters=[DEVICE_PARAM])
    def get(self, request, device):
        target = self.device()
        return self.paginated(
            selectors.device_groups(organization=self.organization, device=target), s.DeviceGroupMembershipSerializer
        )
