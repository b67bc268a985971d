from celery import shared_task

from . import presence, services


@shared_task(name="devices.tasks.connectivity_sweep", acks_late=True, ignore_result=True)
def connectivity_sweep():
    """Every 30 s (CELERY_BEAT_SCHEDULE): move devices past their heartbeat deadline to stale/offline."""
    return services.devices_connectivity_sweep()


@shared_task(name="devices.tasks.presence_flush", acks_late=True, ignore_result=True)
def presence_flush():
    """Every PRESENCE_FLUSH_S (CELERY_BEAT_SCHEDULE, with Redis): leased polls reach PostgreSQL."""
    return presence.flush()
