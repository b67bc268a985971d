"""Issue 11, check 7: worker faults, with a real Celery worker consuming from Redis.

- A task enqueued inside a transaction that rolls back is never run (transaction.on_commit).
- Duplicate delivery of a task does not duplicate its effects (the export runs once; redeliveries skip).
- A worker SIGKILLed mid-task: exports/tests/test_worker.py::test_a_worker_killed_mid_export_is_recovered_by_the_sweeper
  (and exports/tests/test_run.py for the give-up after 3 attempts); here: every task is acks_late, and
  messages of a lost worker are rejected back to the queue.
"""

import os
import threading

import pytest
from celery.signals import task_postrun
from django.db import transaction

from exports.models import ExportJob, Status
from exports.tests.test_worker import job_state, wait_for, worker  # noqa: F401  (the worker fixture)
from fleet.tenancy import rls

EXPORT_BODY = {"scope_type": "ORGANIZATION", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z",
               "includes": ["READINGS"]}


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    return tmp_path


@pytest.fixture
def task_log():
    """(task name, args, return value) of every task the worker ran, in order."""
    runs, lock = [], threading.Lock()

    def after(task_id=None, task=None, args=None, retval=None, **kwargs):
        with lock:
            runs.append((task.name, tuple(args or ()), retval))

    task_postrun.connect(after, weak=False)
    yield runs
    task_postrun.disconnect(after)


def _exports(runs):
    return [run for run in runs if run[0] == "exports.tasks.export_run"]


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_task_enqueued_in_a_rolled_back_transaction_is_never_run(worker, task_log, client_a, org, media):  # noqa: F811
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        rolled_back = client_a.post("/api/v1/exports", EXPORT_BODY, format="json")
        assert rolled_back.status_code == 201  # the job existed, its task was registered on commit…
        raise Abort  # …and the surrounding transaction rolls back
    rolled_back_id = rolled_back.json()["id"]
    with rls.bypass(reason="test"):
        assert not ExportJob.objects.filter(id=rolled_back_id).exists()

    # A committed export afterwards: the worker (FIFO, one at a time) would have met the other first.
    committed_id = client_a.post("/api/v1/exports", EXPORT_BODY, format="json").json()["id"]
    wait_for(lambda: job_state(committed_id).status in (Status.READY, Status.FAILED))
    wait_for(lambda: _exports(task_log))
    ran = [run[1][0] for run in _exports(task_log)]
    print(f"\nrolled-back enqueue: tasks run {len(ran)} (the committed one), rolled-back job run "
          f"{ran.count(rolled_back_id)} times")
    assert ran == [committed_id]


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_duplicate_delivery_does_not_duplicate_the_export(worker, task_log, client_a, org, media):  # noqa: F811
    from exports import tasks

    job_id = client_a.post("/api/v1/exports", EXPORT_BODY, format="json").json()["id"]
    # The same message delivered twice more (a redelivery after a lost ack, a duplicate publish).
    tasks.export_run.delay(job_id, str(org.id))
    tasks.export_run.delay(job_id, str(org.id))
    wait_for(lambda: len(_exports(task_log)) == 3)
    state = job_state(job_id)
    results = [run[2] for run in _exports(task_log)]
    files = [name for _, _, names in os.walk(media) for name in names]
    print(f"\nduplicate delivery: 3 deliveries -> results {results}, attempts {state.attempts}, files {len(files)}")
    assert state.status == Status.READY and state.attempts == 1
    assert results == ["ready", "skipped", "skipped"]
    assert len(files) == 1


def test_every_task_is_acks_late_and_lost_workers_requeue():
    from django.conf import settings

    from fleet.celery import app

    app.loader.import_default_modules()
    ours = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert ours, "no task registered"
    not_late = sorted(name for name, task in ours.items() if not task.acks_late)
    print(f"\ntasks: {len(ours)} registered, acks_late on {len(ours) - len(not_late)}")
    assert not_late == []
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST and settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
