from rest_framework.routers import SimpleRouter

from fleet.activity.api import views

router = SimpleRouter(trailing_slash=False)
router.register("activity", views.ActivityViewSet, basename="activity")

urlpatterns = router.urls
