"""Run one export job in this fresh process and report its wall time and peak RSS (for bench.run).

    python -m bench.export_probe JOB_ID ORG_ID
"""

import json
import resource
import sys
import time


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
                      "size_bytes": job.size_bytes, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


if __name__ == "__main__":
    main()
