"""Input and output serializers for readings, quarantine and annotations.

Query-parameter serializers name their range fields `from` / `to` (Python keywords), so those
fields are declared as `from_` / `to_` and renamed in get_fields().
"""

from rest_framework import serializers

from ..models import METRIC_MAX, Annotation, AnnotationClass, QuarantinedReading, Reading
from ..selectors import AGGREGATES, BUCKETS


class RangeFieldsMixin:
    """`from_` / `to_` appear as `from` / `to`."""

    def get_fields(self):
        fields = super().get_fields()
        return type(fields)((name[:-1] if name in ("from_", "to_") else name, field) for name, field in fields.items())


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# --- ingest --------------------------------------------------------------------------------------


class ReadingItemSerializer(serializers.Serializer):
    """One reading of a batch (documentation: items are validated one by one by the service)."""

    device_id = serializers.CharField(
        required=False,
        help_text="The device's UUID `id` or its `device_id`. Required with an API key; with a device token it "
        "may be omitted and must otherwise name the calling device.",
    )
    metric = serializers.CharField(max_length=METRIC_MAX)
    ts = serializers.DateTimeField(help_text="ISO-8601; timestamps without an offset are taken as UTC.")
    value = serializers.FloatField()


class ReadingsBatchSerializer(serializers.Serializer):
    readings = ReadingItemSerializer(many=True, help_text="At most READINGS_BATCH_MAX (10,000) items.")


class ReadingsBatchRequestSerializer(serializers.Serializer):
    """The request as the server reads it: any item is accepted into the batch and validated on its own
    (shape: ReadingItemSerializer); an invalid one is quarantined and reported in `errors`, never rejected."""

    readings = serializers.ListField(
        child=serializers.JSONField(),
        help_text="At most READINGS_BATCH_MAX (10,000) items, each an object with `device_id` (device UUID or "
        "identifier; required with an API key), `metric` (string), `ts` (ISO-8601; no offset: UTC) and `value` "
        "(number). Invalid items are quarantined (202 with `errors`), never rejected.",
    )


class IngestErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    reason = serializers.CharField()


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="New readings stored.")
    duplicates = serializers.IntegerField(help_text="Valid readings already stored for (device, metric, ts): ignored.")
    quarantined = serializers.IntegerField(help_text="Invalid items, kept in /admin/quarantine.")
    errors = IngestErrorSerializer(many=True)


# --- queries -------------------------------------------------------------------------------------


class ReadingsQuerySerializer(RangeFieldsMixin, serializers.Serializer):
    device = serializers.CharField(required=False, help_text="Device UUID `id` or `device_id`.")
    metric = serializers.CharField(required=False, max_length=METRIC_MAX)
    from_ = serializers.DateTimeField(required=False, help_text="Inclusive lower bound (ISO-8601).")
    to_ = serializers.DateTimeField(required=False, help_text="Exclusive upper bound (ISO-8601).")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)
    cursor = serializers.CharField(required=False, help_text="`next_cursor` of the previous page.")

    def validate(self, attrs):
        if attrs.get("from") and attrs.get("to") and attrs["from"] >= attrs["to"]:
            raise serializers.ValidationError({"to": ["Must be after from."]})
        return attrs


class DeviceOrGroupMixin:
    """Exactly one of `device` and `group` (a device group: its member devices together)."""

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if bool(attrs.get("device")) == bool(attrs.get("group")):
            raise serializers.ValidationError({"device": ["Give exactly one of device and group."]})
        return attrs


class AggregatedQuerySerializer(DeviceOrGroupMixin, RangeFieldsMixin, serializers.Serializer):
    device = serializers.CharField(required=False, help_text="Device UUID `id` or `device_id`.")
    group = serializers.CharField(
        required=False, help_text="Device group UUID or slug: readings of all its members (instead of `device`)."
    )
    metric = serializers.CharField(max_length=METRIC_MAX)
    from_ = serializers.DateTimeField(required=False, help_text="Inclusive; default `to` minus one day.")
    to_ = serializers.DateTimeField(required=False, help_text="Exclusive; default now.")
    bucket = serializers.ChoiceField(choices=list(BUCKETS))
    agg = serializers.CharField(
        required=False, default="avg", help_text=f"Comma-separated subset of {', '.join(AGGREGATES)} (default avg)."
    )

    def validate_agg(self, value):
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in AGGREGATES]
        if not names or unknown:
            raise serializers.ValidationError(f"Use a comma-separated subset of {', '.join(AGGREGATES)}.")
        return list(dict.fromkeys(names))


class StatsQuerySerializer(DeviceOrGroupMixin, RangeFieldsMixin, serializers.Serializer):
    device = serializers.CharField(required=False, help_text="Device UUID `id` or `device_id`.")
    group = serializers.CharField(
        required=False, help_text="Device group UUID or slug: readings of all its members (instead of `device`)."
    )
    metric = serializers.CharField(required=False, max_length=METRIC_MAX)
    from_ = serializers.DateTimeField(required=False)
    to_ = serializers.DateTimeField(required=False)


class ReadingSerializer(serializers.Serializer):
    device = serializers.UUIDField(source="device_id", help_text="The device's UUID.")
    device_id = serializers.CharField(source="device.device_id", help_text="The device's identifier.")
    metric = serializers.CharField()
    ts = serializers.DateTimeField()
    value = serializers.FloatField()

    class Meta:
        model = Reading


class ReadingsPageSerializer(serializers.Serializer):
    readings = ReadingSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True, help_text="Pass as `cursor` for the next page; null at the end.")
    limit = serializers.IntegerField()


class BucketSerializer(serializers.Serializer):
    ts = serializers.DateTimeField(help_text="Bucket start (UTC-aligned).")
    avg = serializers.FloatField(required=False, allow_null=True)
    min = serializers.FloatField(required=False, allow_null=True)
    max = serializers.FloatField(required=False, allow_null=True)
    count = serializers.IntegerField(required=False)
    sum = serializers.FloatField(required=False, allow_null=True)


class AggregatedSerializer(RangeFieldsMixin, serializers.Serializer):
    device = serializers.UUIDField(allow_null=True, help_text="Null when a group was asked for.")
    group = serializers.UUIDField(allow_null=True, required=False, help_text="The device group, when asked for.")
    metric = serializers.CharField()
    bucket = serializers.ChoiceField(choices=list(BUCKETS))
    from_ = serializers.DateTimeField()
    to_ = serializers.DateTimeField()
    buckets = BucketSerializer(many=True, help_text="Only non-empty buckets, oldest first, with the requested aggregates.")


class StatsSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    min = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)
    avg = serializers.FloatField(allow_null=True)
    first_ts = serializers.DateTimeField(allow_null=True)
    last_ts = serializers.DateTimeField(allow_null=True)
    last_value = serializers.FloatField(allow_null=True)


# --- quarantine ----------------------------------------------------------------------------------


class DeviceBriefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    device_id = serializers.CharField()
    name = serializers.CharField()


class QuarantinedReadingSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    device = DeviceBriefSerializer(allow_null=True)
    raw = serializers.JSONField(help_text="The item exactly as received.")
    reason = serializers.CharField()
    received_at = serializers.DateTimeField()

    class Meta:
        model = QuarantinedReading


class QuarantineReleaseSerializer(serializers.Serializer):
    reading = serializers.JSONField(
        required=False, help_text="A corrected item ({device_id?, metric, ts, value}); default: the item as received."
    )


class QuarantineReleasedSerializer(serializers.Serializer):
    result = serializers.ChoiceField(choices=["accepted", "duplicate"])


# --- annotations ---------------------------------------------------------------------------------

COLOR = r"^#[0-9a-fA-F]{6}$"


class AnnotationClassSerializer(serializers.ModelSerializer):
    class Meta:
        model = AnnotationClass
        fields = ["id", "name", "color", "created_at"]
        read_only_fields = fields


class AnnotationClassWriteSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)
    color = serializers.RegexField(COLOR, required=False, default="#888888", help_text="#rrggbb")


class AnnotationClassUpdateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100, required=False)
    color = serializers.RegexField(COLOR, required=False, help_text="#rrggbb")


class AnnotationSerializer(serializers.ModelSerializer):
    device = DeviceBriefSerializer()
    class_id = serializers.UUIDField(source="annotation_class_id")
    class_name = serializers.CharField(source="annotation_class.name")

    class Meta:
        model = Annotation
        fields = ["id", "device", "class_id", "class_name", "ts_from", "ts_to", "text", "created_by", "created_at", "updated_at"]
        read_only_fields = fields


class AnnotationWriteSerializer(serializers.Serializer):
    device = StrictCharField(help_text="Device UUID `id` or `device_id`.")
    class_id = serializers.UUIDField()
    ts_from = serializers.DateTimeField()
    ts_to = serializers.DateTimeField(required=False, allow_null=True)
    text = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)

    def validate(self, attrs):
        if attrs.get("ts_to") is not None and attrs["ts_to"] < attrs["ts_from"]:
            raise serializers.ValidationError({"ts_to": ["Must not be before ts_from."]})
        return attrs


class AnnotationUpdateSerializer(serializers.Serializer):
    class_id = serializers.UUIDField(required=False)
    ts_from = serializers.DateTimeField(required=False)
    ts_to = serializers.DateTimeField(required=False, allow_null=True)
    text = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
