import django_filters
from django.utils import timezone

from ..models import RegistrationToken, TokenStatus
from ..selectors import registration_token_status_q


class RegistrationTokenFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=TokenStatus.choices, method="filter_status")

    class Meta:
        model = RegistrationToken
        fields = ["status"]

    def filter_status(self, queryset, name, value):
        return queryset.filter(registration_token_status_q(status=value, now=timezone.now()))
