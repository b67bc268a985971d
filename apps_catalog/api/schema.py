"""OpenAPI security schemes of the app keys (registered on import, from AppsCatalogConfig.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class PublishableKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps_catalog.authentication.PublishableKeyAuthentication"
    name = "PublishableKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "pk_live_…",
            "description": "Publishable app key (mobile/browser SDKs): `Authorization: Bearer pk_live_…`. "
            "Only device registration and routing telemetry accept it.",
        }


class AppKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps_catalog.authentication.AppKeyAuthentication"
    name = "AppKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ak_live_…",
            "description": "Server-side app key: `Authorization: Bearer ak_live_…`; reads its own app's "
            "capability slots and inference config.",
        }
