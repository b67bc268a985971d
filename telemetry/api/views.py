"""Thin views: validate input, call a service or selector, render output."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from fleet.api.errors import ErrorSerializer
from fleet.api.serializers import iso
from fleet.api.views import OrgScopedAPIView, OrgScopedViewSet, validated
from fleet.errors import Invalid
from fleet.tenancy.models import Role

from .. import selectors, services
from ..models import AnnotationClass
from . import serializers as s
from .filters import AnnotationFilter

ERRORS = {400: ErrorSerializer, 404: ErrorSerializer}


def device_param(view, ref):
    device = selectors.device_by_ref(organization=view.organization, ref=ref)
    if device is None:
        raise NotFound("No such device.")
    return device


def scope_param(view, query):
    """(device, group, device_ids) for `device=` or `group=` (a group means its member devices)."""
    if query.get("group"):
        group, device_ids = selectors.group_member_ids(organization=view.organization, ref=query["group"])
        if group is None:
            raise NotFound("No such device group.")
        return None, group, device_ids
    return device_param(view, query["device"]), None, None


class ReadingsBatchView(OrgScopedAPIView):
    """Batch ingest: valid items stored in one INSERT … SELECT FROM unnest(…), invalid ones quarantined."""

    serializer_class = s.ReadingSerializer
    principal_kinds = ("device", "api_key", "user")

    @property
    def max_body_bytes(self):  # 10,000 readings fit; above the default JSON cap (docs/security.md)
        return settings.READINGS_BATCH_MAX_BYTES

    def required_role(self, request):
        if self.principal.kind == "device":
            return None  # a device reports only its own readings
        return Role.OPERATOR

    def scoped_queryset(self):
        return selectors.readings_queryset(organization=self.organization)

    @extend_schema(
        operation_id="readings_batch",
        request=s.ReadingsBatchRequestSerializer,
        responses={202: s.IngestResultSerializer, 400: ErrorSerializer, 413: ErrorSerializer},
        description="Store a batch of readings. Items are validated one by one: invalid ones are quarantined "
        "(listed in `errors` by index), never dropped. Duplicates of (device, metric, ts) are ignored: the first "
        "write wins. A device token reports its own readings; an API key names `device_id` in each item.",
    )
    def post(self, request):
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("readings"), list):
            raise ValidationError({"readings": ["Expected an object with a `readings` list."]})
        device = self.principal.device if self.principal.kind == "device" else None
        result = services.readings_ingest(organization=self.organization, items=body["readings"], device=device)
        return Response(s.IngestResultSerializer(result).data, status=status.HTTP_202_ACCEPTED)


class ReadingsView(OrgScopedAPIView):
    """Raw readings, newest first, by cursor."""

    serializer_class = s.ReadingSerializer

    def scoped_queryset(self):
        return selectors.readings_queryset(organization=self.organization)

    @extend_schema(
        operation_id="readings_list",
        parameters=[s.ReadingsQuerySerializer],
        responses={200: s.ReadingsPageSerializer, **ERRORS},
    )
    def get(self, request):
        query = validated(s.ReadingsQuerySerializer, request.query_params)
        device = device_param(self, query["device"]) if query.get("device") else None
        rows, next_cursor = selectors.readings_page(
            organization=self.organization,
            device=device,
            metric=query.get("metric"),
            ts_from=query.get("from"),
            ts_to=query.get("to"),
            limit=query["limit"],
            cursor=query.get("cursor"),
        )
        return Response(
            {"readings": s.ReadingSerializer(rows, many=True).data, "next_cursor": next_cursor, "limit": query["limit"]}
        )


class ReadingsAggregatedView(OrgScopedAPIView):
    serializer_class = s.ReadingSerializer

    def scoped_queryset(self):
        return selectors.readings_queryset(organization=self.organization)

    @extend_schema(
        operation_id="readings_aggregated",
        parameters=[s.AggregatedQuerySerializer],
        responses={200: s.AggregatedSerializer, **ERRORS},
        description="Time buckets computed in SQL (date_bin on PostgreSQL), aligned to UTC.",
    )
    def get(self, request):
        query = validated(s.AggregatedQuerySerializer, request.query_params)
        device, group, device_ids = scope_param(self, query)
        ts_to = query.get("to") or timezone.now()
        ts_from = query.get("from") or ts_to - timedelta(days=1)
        if ts_from >= ts_to:
            raise Invalid("Must be after from.", field="to")
        buckets = selectors.readings_aggregated(
            organization=self.organization,
            device=device,
            metric=query["metric"],
            ts_from=ts_from,
            ts_to=ts_to,
            bucket=query["bucket"],
            aggregates=query["agg"],
            device_ids=device_ids,
        )
        data = {"device": device.id if device else None, "group": group.id if group else None, "metric": query["metric"], "bucket": query["bucket"], "from": ts_from, "to": ts_to}
        body = s.AggregatedSerializer({**data, "buckets": []}).data
        # Only the requested aggregates per bucket (the schema marks each one optional).
        body["buckets"] = [{**bucket, "ts": iso(bucket["ts"])} for bucket in buckets]
        return Response(body)


class ReadingsStatsView(OrgScopedAPIView):
    serializer_class = s.ReadingSerializer

    def scoped_queryset(self):
        return selectors.readings_queryset(organization=self.organization)

    @extend_schema(
        operation_id="readings_stats",
        parameters=[s.StatsQuerySerializer],
        responses={200: s.StatsSerializer, **ERRORS},
        description="count, min, max, avg, first_ts, last_ts and last_value in one SQL statement.",
    )
    def get(self, request):
        query = validated(s.StatsQuerySerializer, request.query_params)
        device, _group, device_ids = scope_param(self, query)
        stats = selectors.readings_stats(
            organization=self.organization,
            device=device,
            device_ids=device_ids,
            metric=query.get("metric"),
            ts_from=query.get("from"),
            ts_to=query.get("to"),
        )
        return Response(s.StatsSerializer(stats).data)


class QuarantineViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, OrgScopedViewSet):
    """Invalid ingested items, newest first (admin role)."""

    results_key = "quarantined_readings"
    serializer_class = s.QuarantinedReadingSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def scoped_queryset(self):
        return selectors.quarantine_queryset(organization=self.organization)

    @extend_schema(operation_id="quarantine_list")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(operation_id="quarantine_delete", responses={204: None, 404: ErrorSerializer})
    def destroy(self, request, *args, **kwargs):
        services.quarantine_delete(item=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="quarantine_release",
        request=s.QuarantineReleaseSerializer,
        responses={200: s.QuarantineReleasedSerializer, **ERRORS},
        description="Re-validate the item (or the corrected `reading`); on success it is stored (or found to be a "
        "duplicate) and leaves the quarantine. Still invalid: 400 with the reason, and it stays.",
    )
    @action(detail=True, methods=["post"], url_path="release")
    def release(self, request, *args, **kwargs):
        item = self.get_object()
        data = validated(s.QuarantineReleaseSerializer, request.data if isinstance(request.data, dict) else {})
        result = services.quarantine_release(item=item, corrected=data.get("reading"))
        return Response({"result": result})


class AnnotationClassViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet
):
    results_key = "annotation_classes"
    serializer_class = s.AnnotationClassSerializer

    def scoped_queryset(self):
        return selectors.annotation_class_queryset(organization=self.organization)

    @extend_schema(
        operation_id="annotation_classes_create",
        request=s.AnnotationClassWriteSerializer,
        responses={201: s.AnnotationClassSerializer, 400: ErrorSerializer, 409: ErrorSerializer},
    )
    def create(self, request):
        data = validated(s.AnnotationClassWriteSerializer, request.data)
        created = services.annotation_class_create(organization=self.organization, **data)
        return Response(s.AnnotationClassSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="annotation_classes_update",
        request=s.AnnotationClassUpdateSerializer,
        responses={200: s.AnnotationClassSerializer, **ERRORS, 409: ErrorSerializer},
    )
    def partial_update(self, request, *args, **kwargs):
        target = self.get_object()
        data = validated(s.AnnotationClassUpdateSerializer, request.data)
        target = services.annotation_class_update(annotation_class=target, **data)
        return Response(s.AnnotationClassSerializer(target).data)

    @extend_schema(operation_id="annotation_classes_delete", responses={204: None, 404: ErrorSerializer, 409: ErrorSerializer})
    def destroy(self, request, *args, **kwargs):
        services.annotation_class_delete(annotation_class=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class AnnotationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    results_key = "annotations"
    serializer_class = s.AnnotationSerializer
    filterset_class = AnnotationFilter

    def scoped_queryset(self):
        return selectors.annotation_queryset(organization=self.organization)

    def _class(self, class_id):
        found = AnnotationClass.objects.filter(organization=self.organization, id=class_id).first()
        if found is None:
            raise Invalid("No such annotation class.", field="class_id")
        return found

    @extend_schema(
        operation_id="annotations_create",
        request=s.AnnotationWriteSerializer,
        responses={201: s.AnnotationSerializer, 400: ErrorSerializer},
    )
    def create(self, request):
        data = validated(s.AnnotationWriteSerializer, request.data)
        device = selectors.device_by_ref(organization=self.organization, ref=data["device"])
        if device is None:
            raise Invalid("No such device.", field="device")
        created = services.annotation_create(
            organization=self.organization,
            device=device,
            annotation_class=self._class(data["class_id"]),
            ts_from=data["ts_from"],
            ts_to=data.get("ts_to"),
            text=data["text"],
            created_by=self.principal.label or self.principal.kind,
        )
        return Response(s.AnnotationSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="annotations_update",
        request=s.AnnotationUpdateSerializer,
        responses={200: s.AnnotationSerializer, **ERRORS},
    )
    def partial_update(self, request, *args, **kwargs):
        target = self.get_object()
        data = dict(validated(s.AnnotationUpdateSerializer, request.data))
        if "class_id" in data:
            data["annotation_class"] = self._class(data.pop("class_id"))
        target = services.annotation_update(annotation=target, **data)
        return Response(s.AnnotationSerializer(target).data)

    @extend_schema(operation_id="annotations_delete", responses={204: None, 404: ErrorSerializer})
    def destroy(self, request, *args, **kwargs):
        services.annotation_delete(annotation=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)



