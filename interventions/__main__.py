"""``python -m interventions explain|voice|causal ...``: see ``interventions.cli``."""

from interventions.cli import main

raise SystemExit(main())
