"""Pagination classes carrying each list's results key at class level.

The OpenAPI generator instantiates `pagination_class` itself (it does not go through the view's
`paginator`, which is where fleet.api sets `results_key`), so without these the schema would name
the list `results` while responses use `devices` / `events` / `users`.
"""

from fleet.api.pagination import LimitOffsetPagination


def keyed(results_key):
    return type(f"{results_key.title()}Pagination", (LimitOffsetPagination,), {"results_key": results_key})


DevicesPagination = keyed("devices")
EventsPagination = keyed("events")
UsersPagination = keyed("users")
