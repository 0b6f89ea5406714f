"""The base of every parameter-file table: strict types, unknown keys refused, defaults checked."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """One ``[table]`` of a parameter file (pydantic, strict, no extra keys)."""

    # no NaN or infinity anywhere: a rate, β or tolerance of inf is never meant
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)
