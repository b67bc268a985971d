from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "devices"
    label = "devices"
    verbose_name = "Devices"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import authentication  # noqa: F401  (registers the OpenAPI security scheme)
