"""Signed download URLs: `?expires=<unix time>&signature=<django.core.signing>` instead of a credential."""

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, permissions
from rest_framework.exceptions import NotFound

from .. import services
from ..models import ExportJob


class SignedExportUrlAuthentication(authentication.BaseAuthentication):
    """The signature (salted with the organization and the job) is the credential; a tampered, expired or
    foreign URL is indistinguishable from a missing export: 404."""

    def authenticate(self, request):
        view = (getattr(request, "parser_context", None) or {}).get("kwargs") or {}
        job = services.export_for_download(
            job_id=view.get("id"),
            expires=request.query_params.get("expires"),
            signature=request.query_params.get("signature"),
        )
        if job is None:
            raise NotFound("No such export.")
        return AnonymousUser(), job


class HasSignedExportUrl(permissions.BasePermission):
    def has_permission(self, request, view):
        if not isinstance(request.auth, ExportJob):
            raise NotFound("No such export.")
        return True


class SignedExportUrlScheme(OpenApiAuthenticationExtension):
    target_class = "exports.api.authentication.SignedExportUrlAuthentication"
    name = "SignedExportUrl"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "query",
            "name": "signature",
            "description": "The `download_url` of a READY export (GET /api/v1/exports/{id}) carries `expires` and "
            "`signature`; it works without an API key until it expires.",
        }
