from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "fleet.api"
    label = "fleet_api"

    def ready(self):
        from fleet.api import schema  # noqa: F401  (registers the OpenAPI auth extensions)
