from .models import ExportJob


def export_queryset(*, organization):
    return ExportJob.objects.filter(organization=organization).select_related("organization").order_by("-created_at", "id")
