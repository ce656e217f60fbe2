"""Plugin of the cameras benchmark (bench_cameras.py): ``Summary``, see summary.py."""
