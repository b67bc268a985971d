"""OpenAPI: every operation documents its errors in the common shape and its security schemes."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

from fleet.api.errors import ErrorSerializer

BODY_METHODS = ("POST", "PUT", "PATCH")


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        method = self.method.upper()
        codes = ["401", "403", "429", "500"]
        if method in BODY_METHODS or self._get_filter_parameters() or self._get_pagination_parameters():
            codes.append("400")
        if method in BODY_METHODS:
            codes += ["413", "415"]
        if "{" in self.path:
            codes.append("404")
        if not self.get_auth():
            codes = [code for code in codes if code not in ("401", "403")]
        for code in codes:
            responses.setdefault(code, self._get_response_for_code(ErrorSerializer, code))
        return responses


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "fleet.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "sk_live_…",
            "description": "Organization API key: `Authorization: Bearer sk_live_…`.",
        }


class JWTScheme(OpenApiAuthenticationExtension):
    target_class = "fleet.api.authentication.JWTAuthentication"
    name = "UserJWT"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "User access token from POST /api/v1/auth/token.",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "fleet.api.authentication.SessionAuthentication"
    name = "Session"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
