from django.contrib.admin.apps import AdminConfig


class FleetAdminConfig(AdminConfig):
    default_site = "fleet.tenancy.admin_site.FleetAdminSite"
