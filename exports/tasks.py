"""Celery tasks: fetch ids, call a service. acks_late + idempotent services (see exports.services)."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, ignore_result=True)
def export_run(export_id, org_id):
    return services.export_run(job_id=export_id, org_id=org_id)


@shared_task(acks_late=True, ignore_result=True)
def export_sweep():
    return services.exports_sweep()


@shared_task(acks_late=True, ignore_result=True)
def export_expire():
    return services.exports_expire()
