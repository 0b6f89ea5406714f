"""Errors hebbsim raises for conditions a user can act on."""


class HebbsimError(Exception):
    """Base class of hebbsim's own errors."""


class DivergenceError(HebbsimError, FloatingPointError):
    """A state became non-finite during integration. ``step`` counts Euler steps from 1 (the
    first step whose result is non-finite); ``advice`` says what to change, for the settings in
    force (:func:`hebbsim.simulate.engines.base.divergence_advice`)."""

    def __init__(self, phase: str, step: int, population: str, hint: str = "",
                 advice: str = "lower dynamics.dt or the learning rates"):
        self.phase, self.step, self.population = phase, step, population
        msg = (f"non-finite state in population {population!r} at step {step} of the {phase} phase; "
               f"the integration diverged. {advice[:1].upper()}{advice[1:]}")
        super().__init__(msg + (f" ({hint})" if hint else ""))


class DataError(HebbsimError, FileNotFoundError):
    """A data set is missing or corrupt."""


class RunExistsError(HebbsimError, FileExistsError):
    """The run file (or its checkpoint) exists and neither resume nor overwrite was asked for."""
