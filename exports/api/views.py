from django.core.files.storage import default_storage
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.api.errors import ErrorSerializer
from fleet.api.views import OrgScopedViewSet, validated

from .. import selectors, services
from . import serializers as s
from .authentication import HasSignedExportUrl, SignedExportUrlAuthentication
from .filters import ExportFilter


class ExportViewSet(mixins.ListModelMixin, OrgScopedViewSet):
    """Export jobs: submit, poll (a fresh download_url once READY), cancel or delete."""

    results_key = "exports"
    serializer_class = s.ExportJobSerializer
    filterset_class = ExportFilter

    def scoped_queryset(self):
        return selectors.export_queryset(organization=self.organization)

    @extend_schema(operation_id="exports_list")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        operation_id="exports_create",
        request=s.ExportCreateSerializer,
        responses={201: s.ExportJobSerializer, 400: ErrorSerializer, 404: ErrorSerializer, 429: ErrorSerializer},
        description="Submit an export; it is created PENDING and built by a worker. The scope must exist in the "
        "organization (404 otherwise); at most EXPORT_MAX_RUNNING_PER_ORG exports pending or running (429).",
    )
    def create(self, request):
        data = validated(s.ExportCreateSerializer, request.data)
        try:
            job = services.export_create(
                organization=self.organization,
                scope_type=data["scope_type"],
                scope_id=data.get("scope_id"),
                ts_from=data["from"],
                ts_to=data["to"],
                includes=data["includes"],
                format=data["format"],
                requested_by=self.principal.label or self.principal.credential_id,
                actor=self.principal.actor,
            )
        except services.ExportLimitReached as exc:
            raise Throttled(wait=services.RETRY_AFTER_S, detail=exc.message) from None
        return Response(s.ExportJobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="exports_retrieve", responses={200: s.ExportJobSerializer, 404: ErrorSerializer})
    def retrieve(self, request, *args, **kwargs):
        job = self.get_object()
        context = {"download_url": lambda j: services.export_download_url(job=j, request=request)}
        return Response(s.ExportJobSerializer(job, context=context).data)

    @extend_schema(
        operation_id="exports_delete",
        responses={204: None, 404: ErrorSerializer},
        description="A pending or running export is cancelled (it stays listed as CANCELLED); a finished one is "
        "deleted with its file.",
    )
    def destroy(self, request, *args, **kwargs):
        services.export_cancel_or_delete(job=self.get_object(), actor=self.principal.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ExportDownloadView(APIView):
    """The zip of a READY export, for whoever holds an unexpired signed URL."""

    authentication_classes = [SignedExportUrlAuthentication]
    permission_classes = [HasSignedExportUrl]
    serializer_class = s.ExportJobSerializer  # the model this route is about (isolation walk)

    @extend_schema(
        operation_id="exports_download",
        parameters=[
            OpenApiParameter("expires", OpenApiTypes.INT, OpenApiParameter.QUERY, required=True),
            OpenApiParameter("signature", OpenApiTypes.STR, OpenApiParameter.QUERY, required=True),
        ],
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="The export zip."),
            404: ErrorSerializer,
        },
    )
    def get(self, request, id):  # noqa: A002
        job = request.auth
        try:
            handle = default_storage.open(job.file_name, "rb")
        except FileNotFoundError:
            raise NotFound("No such export.") from None
        return FileResponse(handle, as_attachment=True, filename=f"export-{job.id}.zip", content_type="application/zip")
