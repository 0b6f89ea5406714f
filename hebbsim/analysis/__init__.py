"""Analysis of runs (docs/model.md): alignment angles, plots (:mod:`.plots`), reports (:mod:`.report`).

Importing this package registers the ``Dataset.hebbsim`` accessor (:mod:`.accessor`)."""

from . import accessor as _accessor  # noqa: F401  (registers Dataset.hebbsim)
