import django_filters

from apps_catalog.models import CatalogModel, ModelFormat, ModelVariant, Platform, Quantization
from apps_catalog.selectors import platforms_include


class CatalogModelFilter(django_filters.FilterSet):
    capability = django_filters.CharFilter(field_name="capability__key", help_text="Capability key, e.g. vision.")
    scope = django_filters.ChoiceFilter(
        choices=[("public", "public"), ("private", "private")],
        method="filter_scope",
        help_text="Only public catalog entries or only the organization's own models.",
    )

    class Meta:
        model = CatalogModel
        fields = ["capability", "scope"]

    def filter_scope(self, queryset, name, value):
        return queryset.filter(organization__isnull=(value == "public"))


class VariantFilter(django_filters.FilterSet):
    capability = django_filters.CharFilter(field_name="model__capability__key", help_text="Capability key.")
    platform = django_filters.ChoiceFilter(choices=Platform.choices, method="filter_platform")
    format = django_filters.ChoiceFilter(choices=ModelFormat.choices)
    quantization = django_filters.ChoiceFilter(choices=Quantization.choices)

    class Meta:
        model = ModelVariant
        fields = ["capability", "platform", "format", "quantization"]

    def filter_platform(self, queryset, name, value):
        return queryset.filter(platforms_include(value))
