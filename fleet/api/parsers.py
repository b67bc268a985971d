"""JSON parsing with bounds: nesting depth and string lengths are limited for every JSON body.

Configured globally (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]). Body size is bounded before parsing
(fleet.api.middleware for the global cap and chunked bodies, OrgScopedMixin.initial per endpoint).
"""

import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _check_string(value, max_string):
    if len(value) > max_string:
        raise ParseError(f"JSON strings are limited to {max_string} characters.")
    if "\x00" in value:  # PostgreSQL text and jsonb cannot store NUL: refuse it here, not with a 500
        raise ParseError("JSON strings may not contain NUL (\\u0000).")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800": not storable text
        raise ParseError("JSON strings must be valid Unicode (no lone surrogate escapes).") from None


def check_bounds(data, *, max_depth, max_string):
    """Raise ParseError when `data` nests deeper than max_depth, holds a longer string (keys too), or a
    string that no database column could store (NUL, lone surrogates)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_string(value, max_string)
            continue
        if isinstance(value, (dict, list)):
            if depth > max_depth:
                raise ParseError(f"JSON nesting is limited to {max_depth} levels.")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_string(key, max_string)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser plus a maximum nesting depth and string length; NaN/Infinity refused."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read() if stream is not None else b""
        try:
            data = json.loads(raw.decode(encoding), parse_constant=_reject_constant)
        except RecursionError:
            raise ParseError(f"JSON nesting is limited to {settings.JSON_MAX_DEPTH} levels.") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        check_bounds(data, max_depth=settings.JSON_MAX_DEPTH, max_string=settings.JSON_MAX_STRING_LENGTH)
        return data
