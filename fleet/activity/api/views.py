from rest_framework import mixins

from fleet.activity.api.filters import ActivityFilter
from fleet.activity.api.serializers import ActivityEventSerializer
from fleet.activity.selectors import activity_list
from fleet.api.views import OrgScopedViewSet


class ActivityViewSet(mixins.ListModelMixin, OrgScopedViewSet):
    """The organization's activity feed, newest first."""

    results_key = "events"
    serializer_class = ActivityEventSerializer
    filterset_class = ActivityFilter

    def scoped_queryset(self):
        return activity_list(organization=self.organization)
