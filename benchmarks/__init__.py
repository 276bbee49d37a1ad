"""gra's benchmarks: scripts (``bench_*.py``) and what they share, outside the package.

- ``harness``: machine and code info, result files, the table of checks,
  starting and reaping peer processes (every script uses it);
- ``bus`` and ``scheduler``: the bus and scheduler benchmarks (``bench_bus.py``,
  ``bench_scheduler.py`` and ``quick.py``, which ``gra bench`` runs, call them);
- ``doubles``: the test doubles they measure gra against (echo agents,
  simulated agents), run as their own processes.

Scripts run as files (``python benchmarks/bench_bus.py``) put the checkout's
root on ``sys.path`` first, so ``benchmarks.*`` imports the same modules there
as in the tests. gra never imports from here.
"""
