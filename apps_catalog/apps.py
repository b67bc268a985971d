from django.apps import AppConfig


class AppsCatalogConfig(AppConfig):
    name = "apps_catalog"
    label = "apps_catalog"
    verbose_name = "Apps and model catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from apps_catalog.api import schema  # noqa: F401  (OpenAPI security schemes)
