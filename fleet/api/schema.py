"""OpenAPI: every operation documents its errors in the common shape and its security schemes."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

from fleet.api.errors import ErrorSerializer

BODY_METHODS = ("POST", "PUT", "PATCH")


class AutoSchema(SpectacularAutoSchema):
    def _is_list_view(self, serializer=None):
        # A single-purpose GET view that answers with `self.paginated(...)` names its list with
        # `results_key`: it is a list (paginated, with limit/offset), not one object.
        from fleet.api.views import OrgScopedAPIView

        view = self.view
        if (
            self.method == "GET"
            and isinstance(view, OrgScopedAPIView)
            and getattr(view, "results_key", "results") != "results"
            and getattr(view, "pagination_class", None) is not None
        ):
            return True
        return super()._is_list_view(serializer)

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        method = self.method.upper()
        codes = ["401", "403", "406", "429", "500"]
        if method in BODY_METHODS or self._get_filter_parameters() or self._get_pagination_parameters():
            codes.append("400")
        if method in BODY_METHODS:
            codes += ["411", "413", "415"]
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


def postprocess_query_parameters(result, generator, request, public):
    """Query parameters, as the API really reads them (drf-spectacular POSTPROCESSING_HOOKS):

    - an optional query parameter sent empty (`?status=`) means "not given" (django-filter and DRF
      serializers both read it so): `allowEmptyValue: true`;
    - an operation that reads query parameters can answer 400 naming one: documented.
    """
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            query = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
            for parameter in query:
                if not parameter.get("required"):
                    parameter["allowEmptyValue"] = True
            responses = operation["responses"]
            if query and "400" not in responses and "500" in responses:
                error = responses["500"]
                responses["400"] = {**error, "description": "A query parameter is invalid (named in `fields`)."}
    return result
