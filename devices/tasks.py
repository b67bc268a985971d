from celery import shared_task

from . import services


@shared_task(name="devices.tasks.connectivity_sweep", acks_late=True, ignore_result=True)
def connectivity_sweep():
    """Every 30 s (CELERY_BEAT_SCHEDULE): move devices past their heartbeat deadline to stale/offline."""
    return services.devices_connectivity_sweep()
