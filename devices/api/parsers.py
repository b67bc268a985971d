from rest_framework.parsers import BaseParser


class JpegParser(BaseParser):
    """A raw `image/jpeg` body, handed to the view as bytes (verified by the service)."""

    media_type = "image/jpeg"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read()
