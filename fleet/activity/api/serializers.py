from rest_framework import serializers

from fleet.activity.models import ActivityEvent


class ActorSerializer(serializers.Serializer):
    type = serializers.CharField(source="actor_type")
    id = serializers.CharField(source="actor_id")
    label = serializers.CharField(source="actor_label")


class SubjectSerializer(serializers.Serializer):
    type = serializers.CharField(source="subject_type")
    id = serializers.CharField(source="subject_id")


class ActivityEventSerializer(serializers.ModelSerializer):
    actor = ActorSerializer(source="*")
    subject = SubjectSerializer(source="*")
    app_id = serializers.UUIDField(source="app_ref", allow_null=True)
    device_id = serializers.UUIDField(source="device_ref", allow_null=True)

    class Meta:
        model = ActivityEvent
        fields = ["id", "verb", "actor", "subject", "app_id", "device_id", "data", "created_at"]
        read_only_fields = fields
