"""Thin views: resolve (404 first), validate input, call a service or selector, render output."""

from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from devices.api.views import DEVICE_PARAM, DeviceFacingMixin, DeviceLookupMixin
from fleet.api.errors import ErrorSerializer, error_body
from fleet.api.views import OrgScopedAPIView, OrgScopedViewSet, is_uuid, validated
from fleet.tenancy import rls

from .. import selectors, services
from . import serializers as s
from .filters import RegistrationTokenFilter

ERRORS = {400: ErrorSerializer, 401: ErrorSerializer, 409: ErrorSerializer}


def _issued(result):
    record = result.certificate
    return {
        "device_id": result.device.id,
        "certificate": record.certificate_pem,
        "ca_chain": result.ca_chain_pem,
        "serial": record.serial,
        "certificate_expires_at": record.not_after,
    }


class RegistrationTokenViewSet(mixins.ListModelMixin, OrgScopedViewSet):
    """One-time registration tokens of the caller's organization (secrets are never listed)."""

    results_key = "registration_tokens"
    serializer_class = s.RegistrationTokenSerializer
    filterset_class = RegistrationTokenFilter

    def scoped_queryset(self):
        return selectors.registration_token_queryset(organization=self.organization)

    @extend_schema(operation_id="registration_tokens_list")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        operation_id="registration_tokens_create",
        request=s.RegistrationTokenCreateSerializer,
        responses={201: s.RegistrationTokenCreatedSerializer, 400: ErrorSerializer, 409: ErrorSerializer},
        description="Create a device in status pending and a one-time registration token for it. The token "
        "is shown once: flash it into the device, which exchanges it at `provision_endpoint`.",
    )
    def create(self, request):
        data = validated(s.RegistrationTokenCreateSerializer, request.data)
        principal = self.principal
        token, secret = services.registration_token_create(
            organization=self.organization,
            actor=principal.actor,
            created_by=principal.user if principal.kind == "user" else None,
            **data,
        )
        body = {
            "id": token.id,
            "token": secret,
            "device_id": token.device_id,
            "device_name": token.device_name,
            "provision_endpoint": request.build_absolute_uri(reverse("device-provision")),
            "expires_at": token.expires_at,
        }
        return Response(s.RegistrationTokenCreatedSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="registration_tokens_revoke", responses={204: None, 404: ErrorSerializer})
    def destroy(self, request, id=None):
        services.registration_token_revoke(token=self.get_object(), actor=self.principal.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeviceProvisionView(APIView):
    """Authenticated by the registration token in the body only."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="devices_provision",
        auth=[],
        request=s.ProvisionSerializer,
        responses={201: s.ProvisionedSerializer, **ERRORS},
        description="Exchange a one-time registration token and a PKCS#10 CSR for an X.509 client certificate "
        "and a device token, exactly once. Unknown, malformed or revoked token: 401; expired: 401 "
        '"token expired"; already used: 409. A rejected CSR: 400 with the reason (the token stays usable).',
    )
    def post(self, request):
        data = validated(s.ProvisionSerializer, request.data)
        try:
            result = services.device_provision(secret=data["token"], csr_pem=data["csr"])
        except services.CSRRejectedError as exc:
            # Answered, not raised: the enrollment's error log written by the service must be kept.
            return Response(error_body(400, exc.message, exc.fields), status=status.HTTP_400_BAD_REQUEST)
        device = result.device
        body = {
            **_issued(result),
            "api_key": result.api_key,
            "mqtt": {
                "host": settings.MQTT_HOST,
                "port": settings.MQTT_PORT,
                "client_id": str(device.id),
                "topic_prefix": f"{settings.MQTT_TOPIC_PREFIX}/{device.organization_id}/{device.id}",
            },
        }
        return Response(s.ProvisionedSerializer(body).data, status=status.HTTP_201_CREATED)


class DeviceProvisionErrorsView(APIView):
    """An agent reports installation failures with its registration token (not consumed)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="devices_provision_errors",
        auth=[],
        request=s.ProvisionErrorsSerializer,
        responses={200: s.DeviceEnrollmentSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
        description="Append log lines to the token's enrollment and mark it as error. Accepted until the "
        "token expires, also after it was used; revoked: 401.",
    )
    def post(self, request):
        data = validated(s.ProvisionErrorsSerializer, request.data)
        enrollment = services.enrollment_report_errors(secret=data["token"], logs=data["logs"])
        return Response(s.DeviceEnrollmentSerializer(enrollment).data)


class DeviceCertificatesView(DeviceFacingMixin, OrgScopedAPIView):
    """A device's certificates (operators, or the device itself)."""

    results_key = "certificates"
    serializer_class = s.DeviceCertificateSerializer

    @extend_schema(operation_id="devices_certificates_list", parameters=[DEVICE_PARAM])
    def get(self, request, device=None):
        target = self.device()
        queryset = selectors.device_certificates(organization=self.organization, device=target)
        return self.paginated(queryset, s.DeviceCertificateSerializer)


class DeviceCertificateRenewView(DeviceFacingMixin, OrgScopedAPIView):
    """The device, with its own device token, gets a new certificate for a new CSR."""

    serializer_class = s.CertificateIssuedSerializer
    pagination_class = None

    @extend_schema(
        operation_id="devices_certificates_renew",
        parameters=[DEVICE_PARAM],
        request=s.CertificateRenewSerializer,
        responses={
            201: s.CertificateIssuedSerializer, 400: ErrorSerializer, 403: ErrorSerializer, 409: ErrorSerializer
        },
        description="Needs the device's own token. Earlier certificates stay valid until they expire "
        "unless the device is revoked.",
    )
    def post(self, request, device=None):
        target = self.device()
        if self.principal.kind != "device":
            raise PermissionDenied("Renewal needs the device's own token.")
        data = validated(s.CertificateRenewSerializer, request.data)
        result = services.certificate_renew(device=target, actor=self.principal.actor, csr_pem=data["csr"])
        record = result.certificate
        record.ca_chain = result.ca_chain_pem
        return Response(s.CertificateIssuedSerializer(record).data, status=status.HTTP_201_CREATED)


class DeviceEnrollmentsView(DeviceLookupMixin, OrgScopedAPIView):
    """A device's enrollment history (DeviceDeploymentRef shape)."""

    results_key = "enrollments"
    serializer_class = s.DeviceEnrollmentRefSerializer

    @extend_schema(operation_id="devices_enrollments_list", parameters=[DEVICE_PARAM])
    def get(self, request, device=None):
        target = self.device()
        queryset = selectors.device_enrollments(organization=self.organization, device=target)
        return self.paginated(queryset, s.DeviceEnrollmentRefSerializer)


class DeviceEnrollmentDetailView(DeviceLookupMixin, OrgScopedAPIView):
    """One enrollment (DeviceDeployment shape)."""

    serializer_class = s.DeviceEnrollmentSerializer
    pagination_class = None

    @extend_schema(
        operation_id="devices_enrollments_retrieve",
        parameters=[DEVICE_PARAM, OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={200: s.DeviceEnrollmentSerializer, 404: ErrorSerializer},
    )
    def get(self, request, device=None, id=None):
        target = self.device()
        enrollment = None
        if is_uuid(id):
            enrollments = selectors.device_enrollments(organization=self.organization, device=target)
            enrollment = enrollments.filter(id=id).first()
        if enrollment is None:
            raise NotFound("No such enrollment.")
        return Response(s.DeviceEnrollmentSerializer(enrollment).data)


class CrlView(APIView):
    """The organization CA's current CRL: public by design (MQTT brokers fetch it)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="provisioning_crl",
        auth=[],
        parameters=[OpenApiParameter("org_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={(200, "application/pkix-crl"): OpenApiTypes.STR, (404, "application/json"): ErrorSerializer},
        description="PEM-encoded CRL signed by the organization's CA, re-signed at least every 12 hours and "
        "whenever a certificate is revoked. 404 for an unknown organization or one that has not issued a "
        "certificate yet.",
    )
    def get(self, request, org_id=None):
        # No principal: read the one organization's row under its own RLS context.
        with rls.organization_context(org_id=org_id):
            pem = services.crl_current(organization_id=org_id)
        if pem is None:
            raise NotFound("No such CRL.")
        response = HttpResponse(pem, content_type="application/pkix-crl")
        response["Cache-Control"] = "public, max-age=300"
        return response

