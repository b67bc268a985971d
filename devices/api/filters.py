import re

import django_filters
from django.db.models import Q
from rest_framework.exceptions import NotFound, ValidationError

from fleet.api.views import is_uuid

from ..label_selector import selector_q
from ..models import Connectivity, Device, DeviceStatus, Platform

LABEL_PARAM = re.compile(r"^label\[(?P<key>[^\]]+)\]$")


class DeviceFilter(django_filters.FilterSet):
    platform = django_filters.ChoiceFilter(choices=Platform.choices)
    status = django_filters.ChoiceFilter(choices=DeviceStatus.choices)
    connectivity_status = django_filters.ChoiceFilter(choices=Connectivity.choices)
    q = django_filters.CharFilter(method="filter_q", label="Substring of name, device_id or serial number.")
    os_name = django_filters.CharFilter(lookup_expr="iexact")
    agent_version = django_filters.CharFilter()
    user_id = django_filters.UUIDFilter(method="filter_user", label="An end user seen on the device.")
    seen_before = django_filters.IsoDateTimeFilter(field_name="last_heartbeat", lookup_expr="lt")
    seen_after = django_filters.IsoDateTimeFilter(field_name="last_heartbeat", lookup_expr="gte")
    org_id = django_filters.CharFilter(method="filter_org", label="Must be the caller's organization (id or slug).")
    app = django_filters.CharFilter(field_name="app__slug", label="Slug of the app the device registered for.")
    group = django_filters.CharFilter(method="filter_group", label="Members of a device group (UUID or slug).")
    ordering = django_filters.OrderingFilter(fields=("name", "created_at", "last_heartbeat"))

    class Meta:
        model = Device
        fields = []

    def filter_q(self, queryset, name, value):
        return queryset.filter(
            Q(name__icontains=value) | Q(device_id__icontains=value) | Q(serial_number__icontains=value)
        )

    def filter_user(self, queryset, name, value):
        return queryset.filter(device_users__user_id=value)

    def filter_group(self, queryset, name, value):
        from .. import selectors

        organization = self.request.auth.organization
        group = selectors.group_by_ref(organization=organization, ref=value)
        if group is None:
            raise ValidationError({"group": [f"Unknown group {value!r}."]})
        return queryset.filter(id__in=selectors.group_member_ids(organization=organization, group_ids=[group.id]))

    def filter_org(self, queryset, name, value):
        organization = self.request.auth.organization
        if not (value == organization.slug or (is_uuid(value) and str(organization.id) == str(value).lower())):
            raise NotFound("No such organization.")
        return queryset

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        labels = {}
        for param in self.data:
            match = LABEL_PARAM.match(param)
            if match:
                values = self.data.getlist(param) if hasattr(self.data, "getlist") else [self.data[param]]
                if len(set(values)) > 1:
                    return queryset.none()  # a label has one value: both cannot match
                labels[match.group("key")] = values[0]
        if len(labels) > 64:
            raise ValidationError({"label": ["At most 64 label filters."]})
        return label_filter(queryset, labels)


def label_filter(queryset, labels):
    """Devices carrying every `key=value` of `labels`."""
    return queryset.filter(selector_q({"match_labels": labels})) if labels else queryset
