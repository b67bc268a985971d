from django.apps import AppConfig


class BenchConfig(AppConfig):
    """Benchmarks and fleet seeding (`manage.py seed_fleet`); no models."""

    name = "bench"
    label = "bench"
    verbose_name = "Benchmarks"
