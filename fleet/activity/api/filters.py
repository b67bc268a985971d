import django_filters

from fleet.activity.models import ActivityEvent


class ActivityFilter(django_filters.FilterSet):
    verb = django_filters.CharFilter()
    subject_type = django_filters.CharFilter()
    subject_id = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = ActivityEvent
        fields = ["verb", "subject_type", "subject_id", "since", "until"]
