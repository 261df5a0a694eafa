"""``python -m benchmarks``: run the benchmarks (see :mod:`benchmarks.runner`)."""

from benchmarks.runner import main

raise SystemExit(main())
