"""Run one export job in this fresh process and report its wall time and peak RSS (for bench.run).

    python -m bench.export_probe JOB_ID ORG_ID
"""

import json
import resource
import sys
import time


def peak_rss_kb():
    """Peak RSS of this address space. Not getrusage's ru_maxrss: Linux carries that over from the
    parent across fork and exec, so a probe started by a large harness would report the harness."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main():
    import django

    django.setup()
    from exports import services
    from exports.models import ExportJob
    from fleet.tenancy import rls

    job_id, org_id = sys.argv[1], sys.argv[2]
    began = time.perf_counter()
    outcome = services.export_run(job_id=job_id, org_id=org_id)
    seconds = time.perf_counter() - began
    with rls.organization_context(org_id=org_id):
        job = ExportJob.objects.get(pk=job_id)
    print(json.dumps({"outcome": outcome, "seconds": round(seconds, 3), "readings": job.reading_count,
                      "size_bytes": job.size_bytes, "maxrss_kb": peak_rss_kb()}))


if __name__ == "__main__":
    main()
