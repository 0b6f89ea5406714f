"""Errors hebbsim raises for conditions a user can act on."""


class HebbsimError(Exception):
    """Base class of hebbsim's own errors."""


class DivergenceError(HebbsimError, FloatingPointError):
    """A state became non-finite during integration."""

    def __init__(self, phase: str, step: int, population: str, hint: str = ""):
        self.phase, self.step, self.population = phase, step, population
        msg = (
            f"non-finite state in population {population!r} at step {step} of the {phase} phase; "
            "the integration diverged. Lower dynamics.dt or the learning rates, or use clip_states = true"
        )
        super().__init__(msg + (f" ({hint})" if hint else ""))


class DataError(HebbsimError, FileNotFoundError):
    """A data set is missing or corrupt."""


class RunExistsError(HebbsimError, FileExistsError):
    """The run file (or its checkpoint) exists and neither resume nor overwrite was asked for."""
