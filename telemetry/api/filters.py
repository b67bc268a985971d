import uuid

import django_filters
from django.db.models import Q

from ..models import Annotation
from ..selectors import annotations_overlapping


class AnnotationFilter(django_filters.FilterSet):
    """device (UUID or device_id), class (annotation class id), from / to (overlapping interval)."""

    device = django_filters.CharFilter(method="filter_device", help_text="Device UUID `id` or `device_id`.")
    locals()["class"] = django_filters.UUIDFilter(field_name="annotation_class_id", help_text="Annotation class id.")
    locals()["from"] = django_filters.IsoDateTimeFilter(method="filter_from", help_text="Annotations ending at or after.")
    to = django_filters.IsoDateTimeFilter(method="filter_to", help_text="Annotations starting before.")

    class Meta:
        model = Annotation
        fields = []

    def filter_device(self, queryset, name, value):
        try:
            as_uuid = uuid.UUID(value)
        except ValueError:
            return queryset.filter(device__device_id=value)
        return queryset.filter(Q(device_id=as_uuid) | Q(device__device_id=value))

    def filter_from(self, queryset, name, value):
        return annotations_overlapping(queryset, ts_from=value)

    def filter_to(self, queryset, name, value):
        return annotations_overlapping(queryset, ts_to=value)
