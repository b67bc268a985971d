"""Gunicorn configuration shared by `make run` and the benchmarks (bench/)."""

import os

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = 60
accesslog = "-" if os.environ.get("ACCESS_LOG", "1") == "1" else None
