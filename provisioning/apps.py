from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    label = "provisioning"
    verbose_name = "Provisioning"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from devices import registry

        from . import selectors, services

        # Revoking a device revokes its certificates in the same transaction (and refreshes the CRL).
        registry.register_revoke_listener(services.certificates_revoke_for_device)
        registry.register_summary_provider(
            lambda *, organization: {"enrollment_errors": selectors.enrollment_error_count(organization=organization)}
        )
