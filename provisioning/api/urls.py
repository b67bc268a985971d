from django.urls import path

from . import views

tokens = views.RegistrationTokenViewSet

urlpatterns = [
    path(
        "devices/registration/tokens",
        tokens.as_view({"get": "list", "post": "create"}),
        name="registration-token-list",
    ),
    path("devices/registration/tokens/<id>", tokens.as_view({"delete": "destroy"}), name="registration-token-detail"),
    path("devices/provision", views.DeviceProvisionView.as_view(), name="device-provision"),
    path("devices/provision/errors", views.DeviceProvisionErrorsView.as_view(), name="device-provision-errors"),
    path("devices/<device>/certificates", views.DeviceCertificatesView.as_view(), name="device-certificates"),
    path(
        "devices/<device>/certificates/renew",
        views.DeviceCertificateRenewView.as_view(),
        name="device-certificates-renew",
    ),
    path("devices/<device>/enrollments", views.DeviceEnrollmentsView.as_view(), name="device-enrollments"),
    path(
        "devices/<device>/enrollments/<id>",
        views.DeviceEnrollmentDetailView.as_view(),
        name="device-enrollment-detail",
    ),
    path("provisioning/crl/<uuid:org_id>.pem", views.CrlView.as_view(), name="provisioning-crl"),
]
