"""Upward notifications: apps_catalog sits below devices/deployments and never imports them.

`target_removed` is sent inside the transaction that deletes an AppTarget, *before* the row is
deleted, with `organization`, `app` and `target`. Receivers (the deployments issue: drop the target
from deployments, re-run assignment materialization) run in that same transaction; an exception in
a receiver rolls the whole deletion back.
"""

from django.dispatch import Signal

target_removed = Signal()  # kwargs: organization, app, target
