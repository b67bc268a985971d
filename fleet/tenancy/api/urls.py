from django.urls import path
from rest_framework.routers import SimpleRouter

from fleet.tenancy.api import views

router = SimpleRouter(trailing_slash=False)
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")

urlpatterns = [
    path("organization", views.OrganizationView.as_view(), name="organization"),
    path("auth/token", views.TokenObtainView.as_view(), name="auth-token"),
    path("auth/token/refresh", views.TokenRefreshView.as_view(), name="auth-token-refresh"),
    *router.urls,
]
