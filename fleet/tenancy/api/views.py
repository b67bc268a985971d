from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from fleet.activity import services as activity
from fleet.api.authentication import INVALID_CREDENTIALS
from fleet.api.views import OrgScopedAPIView, OrgScopedViewSet, validated
from fleet.tenancy import services
from fleet.tenancy.api import serializers as s
from fleet.tenancy.models import ApiKey, Role


class OrganizationView(OrgScopedAPIView):
    action_roles = {"PATCH": Role.OWNER}
    serializer_class = s.OrganizationSerializer

    @extend_schema(operation_id="organization_retrieve", responses=s.OrganizationSerializer)
    def get(self, request):
        return Response(s.OrganizationSerializer(self.organization).data)

    @extend_schema(
        operation_id="organization_update", request=s.OrganizationUpdateSerializer, responses=s.OrganizationSerializer
    )
    def patch(self, request):
        data = validated(s.OrganizationUpdateSerializer, request.data)
        organization = services.organization_update(organization=self.organization, name=data["name"])
        activity.record(
            organization=organization,
            actor=self.principal.actor,
            verb="organization.updated",
            subject_type="organization",
            subject_id=organization.id,
            data={"name": organization.name},
        )
        return Response(s.OrganizationSerializer(organization).data)


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    results_key = "api_keys"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    serializer_class = s.ApiKeySerializer

    def scoped_queryset(self):
        return ApiKey.objects.order_by("-created_at", "id")

    @extend_schema(request=s.ApiKeyCreateSerializer, responses={201: s.ApiKeyCreatedSerializer})
    def create(self, request):
        data = validated(s.ApiKeyCreateSerializer, request.data)
        api_key, secret = services.api_key_create(
            organization=self.organization,
            name=data["name"],
            role=data["role"],
            expires_at=data.get("expires_at"),
            created_by=self.principal.user,
            creator_role=self.principal.role,
        )
        activity.record(
            organization=self.organization,
            actor=self.principal.actor,
            verb="api_key.created",
            subject_type="api_key",
            subject_id=api_key.id,
            data={"name": api_key.name, "role": api_key.role, "prefix": api_key.prefix},
        )
        api_key.key = secret
        return Response(s.ApiKeyCreatedSerializer(api_key).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request, id=None):
        api_key = services.api_key_revoke(api_key=self.get_object())
        activity.record(
            organization=self.organization,
            actor=self.principal.actor,
            verb="api_key.revoked",
            subject_type="api_key",
            subject_id=api_key.id,
            data={"name": api_key.name, "prefix": api_key.prefix},
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenObtainView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(operation_id="auth_token_create", request=s.TokenObtainSerializer, responses=s.TokenPairSerializer)
    def post(self, request):
        data = validated(s.TokenObtainSerializer, request.data)
        refresh, membership = services.auth_token_issue(
            username=data["username"], password=data["password"], organization_slug=data.get("organization")
        )
        return Response(
            {
                "access": str(refresh.access_token),
                "refresh": str(refresh),
                "organization": membership.organization.slug,
                "role": membership.role,
            }
        )


class TokenRefreshView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_token_refresh", request=s.TokenRefreshInputSerializer, responses=s.TokenAccessSerializer
    )
    def post(self, request):
        data = validated(s.TokenRefreshInputSerializer, request.data)
        try:
            refresh = RefreshToken(data["refresh"])
        except TokenError:
            raise AuthenticationFailed(INVALID_CREDENTIALS) from None
        return Response({"access": str(refresh.access_token)})
