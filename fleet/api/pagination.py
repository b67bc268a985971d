from rest_framework import exceptions, pagination
from rest_framework.response import Response


def _non_negative_int(request, name, default):
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise exceptions.ValidationError({name: ["A valid integer is required."]}) from None
    if value < 0:
        raise exceptions.ValidationError({name: ["Must be zero or more."]})
    return value


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """`{"<plural>": [...], "total", "limit", "offset"}`; limit 1..1000 (default 100), offset >= 0."""

    default_limit = 100
    max_limit = 1000
    results_key = "results"

    @classmethod
    def keyed(cls, results_key):
        """A subclass naming its list `results_key` (the schema generator instantiates the class itself)."""
        return type(f"{cls.__name__}_{results_key}", (cls,), {"results_key": results_key})

    def get_limit(self, request):
        limit = _non_negative_int(request, self.limit_query_param, self.default_limit)
        if not 1 <= limit <= self.max_limit:
            raise exceptions.ValidationError({"limit": [f"Must be between 1 and {self.max_limit}."]})
        return limit

    def get_offset(self, request):
        return _non_negative_int(request, self.offset_query_param, 0)

    def get_paginated_response(self, data):
        return Response({self.results_key: data, "total": self.count, "limit": self.limit, "offset": self.offset})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": [self.results_key, "total", "limit", "offset"],
            "properties": {
                self.results_key: schema,
                "total": {"type": "integer", "example": 1},
                "limit": {"type": "integer", "example": self.default_limit},
                "offset": {"type": "integer", "example": 0},
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": f"Page size, 1 to {self.max_limit} (default {self.default_limit}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_limit},
            },
            {
                "name": "offset",
                "in": "query",
                "required": False,
                "description": "Rows to skip.",
                "schema": {"type": "integer", "minimum": 0},
            },
        ]
