"""The streaming zip: members are written as rows arrive, straight into the storage file.

`zipfile` normally seeks back to patch each member's header; over a forward-only stream (an S3
multipart upload) it must not, so the storage file is wrapped in a writer that has no seek():
zipfile then writes data descriptors after each member and never rewinds. Memory stays bounded
by FLUSH_BYTES of rows (or one fetch) plus the storage backend's part buffer.
"""

import csv
import hashlib
import io
import json
import time
import zipfile

FLUSH_BYTES = 256 * 1024


class ForwardOnlyWriter:
    """write/flush/tell over a storage file, counting bytes; deliberately without seek()."""

    def __init__(self, target):
        self.target = target
        self.size = 0
        self.discarding = False

    def discard(self):
        """After a failure: later writes (zipfile's clean-up at garbage collection) go nowhere."""
        self.discarding = True

    def write(self, data):
        if self.discarding:
            return len(data)
        self.target.write(data)
        self.size += len(data)
        return len(data)

    def tell(self):
        return self.size

    def flush(self):
        flush = getattr(self.target, "flush", None)
        if flush is not None and not getattr(self.target, "_multipart", None):
            flush()


class Member:
    """One zip member written as CSV or JSON lines, with its sha256, byte size and row count."""

    def __init__(self, archive, name, columns, fmt):
        self.name = name
        self.columns = columns
        self.fmt = fmt
        self.sha256 = hashlib.sha256()
        self.rows = 0
        self.bytes = 0
        info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        self._stream = archive.open(info, "w", force_zip64=True)
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")
        if fmt == "csv":
            self._csv.writerow(columns)

    def add(self, row):
        if self.fmt == "csv":
            self._csv.writerow(row)
        else:
            self._buffer.write(json.dumps(dict(zip(self.columns, row, strict=True)), separators=(",", ":")))
            self._buffer.write("\n")
        self.rows += 1
        if self._buffer.tell() >= FLUSH_BYTES:
            self._flush()

    def write(self, data, *, rows=0):
        """CSV rows formatted elsewhere (PostgreSQL's COPY), as bytes; `rows`: how many they complete."""
        self._flush()
        self._write(data)
        self.rows += rows

    def _flush(self):
        data = self._buffer.getvalue().encode()
        self._buffer.seek(0)
        self._buffer.truncate()
        self._write(data)

    def _write(self, data):
        if data:
            self.sha256.update(data)
            self.bytes += len(data)
            self._stream.write(data)

    def close(self):
        self._flush()
        self._stream.close()
        return {"rows": self.rows, "bytes": self.bytes, "sha256": self.sha256.hexdigest()}


def open_archive(writer):
    return zipfile.ZipFile(writer, "w", compression=zipfile.ZIP_DEFLATED)
