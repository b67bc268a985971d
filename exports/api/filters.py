import django_filters

from ..models import ExportJob, ScopeType, Status


class ExportFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices)
    scope_type = django_filters.ChoiceFilter(choices=ScopeType.choices)
    scope_id = django_filters.UUIDFilter()

    class Meta:
        model = ExportJob
        fields = ["status", "scope_type", "scope_id"]
