from fleet.activity.models import ActivityEvent


def activity_list(*, organization, device_id=None, app_id=None, ascending=False):
    events = ActivityEvent.objects.filter(organization=organization)
    if device_id is not None:
        events = events.filter(device_ref=device_id)
    if app_id is not None:
        events = events.filter(app_ref=app_id)
    return events.order_by("created_at", "id") if ascending else events.order_by("-created_at", "-id")
