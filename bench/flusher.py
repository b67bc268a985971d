"""The presence flush (devices.presence) on its beat interval, beside the benchmarks' gunicorn.

`make run` flushes with the beat task devices.tasks.presence_flush; the benchmarks run only this
loop, so that no other scheduled task (an export sweep) runs during a measurement.
"""

import time


def main():
    import django

    django.setup()
    from django.conf import settings

    from devices import presence

    while True:
        began = time.monotonic()
        presence.flush()
        time.sleep(max(0.0, settings.PRESENCE_FLUSH_S - (time.monotonic() - began)))


if __name__ == "__main__":
    main()
