from datetime import UTC

from rest_framework import serializers


def iso(value):
    """A datetime as the API writes it (DRF's DateTimeField with DATETIME_FORMAT "iso-8601"): UTC,
    with `Z`. For representations built without DRF's fields."""
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class StrictSerializer(serializers.Serializer):
    """Input serializer that refuses fields it does not know, naming them: a typo or an attempt to
    set a read-only field is an error, not a silent no-op."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["This field is read-only or unknown."] for name in unknown})
        return super().to_internal_value(data)
