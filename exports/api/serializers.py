from rest_framework import serializers

from ..models import ExportJob, Format, Include, ScopeType, Status


class RangeFieldsMixin:
    """`from_` / `to_` appear as `from` / `to` (Python keywords)."""

    def get_fields(self):
        fields = super().get_fields()
        return type(fields)((name[:-1] if name in ("from_", "to_") else name, field) for name, field in fields.items())


class ExportCreateSerializer(RangeFieldsMixin, serializers.Serializer):
    scope_type = serializers.ChoiceField(choices=ScopeType.choices)
    scope_id = serializers.UUIDField(
        required=False, allow_null=True, help_text="The device's id (DEVICE), the device group's id (DEVICE_GROUP: its members when the export "
        "runs); omitted or the organization's id (ORGANIZATION)."
    )
    from_ = serializers.DateTimeField(help_text="Inclusive start (ISO-8601).")
    to_ = serializers.DateTimeField(help_text="Exclusive end (ISO-8601); at most EXPORT_MAX_RANGE_DAYS after from.")
    includes = serializers.ListField(child=serializers.ChoiceField(choices=Include.choices), min_length=1)
    format = serializers.ChoiceField(choices=Format.choices, default=Format.CSV)


class ExportJobSerializer(RangeFieldsMixin, serializers.ModelSerializer):
    from_ = serializers.DateTimeField(source="range_from")
    to_ = serializers.DateTimeField(source="range_to")
    includes = serializers.ListField(child=serializers.ChoiceField(choices=Include.choices))
    status = serializers.ChoiceField(choices=Status.choices)
    download_url = serializers.SerializerMethodField(
        help_text="READY jobs on GET /exports/{id}: a fresh URL valid for EXPORT_URL_TTL_S seconds (no API key needed)."
    )

    class Meta:
        model = ExportJob
        fields = [
            "id", "scope_type", "scope_id", "from_", "to_", "includes", "format", "status", "progress",
            "requested_by", "created_at", "started_at", "completed_at", "expires_at", "size_bytes", "reading_count",
            "annotation_count", "error", "attempts", "download_url",
        ]
        read_only_fields = fields

    def get_download_url(self, job) -> str | None:
        url_for = self.context.get("download_url")
        return url_for(job) if url_for else None
