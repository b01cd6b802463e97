"""Policy-related config blocks: ``[[policy]]`` time windows, connection defaults and ``[sql]``."""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from hoopgw.config._ssh import COMMAND_CLASS_NAME, GLOB_PREFIXES, SSH_CLASSES
from hoopgw.config._types import MODEL_CONFIG, Seconds, Subject
from hoopgw.policy._classes import PG_CLASSES

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)\Z")
_FUNC = re.compile(r"[a-z_][a-z0-9_$]*\Z")
_SSH_FORMS = (*SSH_CLASSES, *(f"{p}GLOB" for p in GLOB_PREFIXES))


def _class(value: object) -> str:
    """Accept a class name by its form; command class names are checked against ``[ssh]`` by Config."""
    if not isinstance(value, str) or not value or value != value.strip():
        raise PydanticCustomError("class", 'must be a class name like "read", "write", "exec:GLOB" or "*"')
    if value == "*" or value in PG_CLASSES or value in SSH_CLASSES or COMMAND_CLASS_NAME.match(value):
        return value
    if any(value.startswith(p) and len(value) > len(p) for p in GLOB_PREFIXES):
        return value
    raise PydanticCustomError(
        "class",
        "unknown class {value}: postgres classes are {pg}; ssh classes are {ssh}; "
        "command classes are named in [ssh] command_classes; * is every class",
        {"value": repr(value), "pg": ", ".join(PG_CLASSES), "ssh": ", ".join(_SSH_FORMS)},
    )


PolicyClass = Annotated[str, BeforeValidator(_class)]


def _weekdays(value: object) -> tuple[int, ...]:
    """``["mon-fri", "sun"]`` -> (0, 1, 2, 3, 4, 6)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise PydanticCustomError("weekdays", 'must be a list like ["mon-fri"] or ["sat", "sun"]')
    days: set[int] = set()
    for item in value:
        if not isinstance(item, str):
            raise PydanticCustomError("weekdays", 'must be a list like ["mon-fri"] or ["sat", "sun"]')
        first, _, last = item.strip().lower().partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise PydanticCustomError(
                "weekdays",
                "unknown weekday {item} (use mon, tue, wed, thu, fri, sat, sun or a range like mon-fri)",
                {"item": repr(item)},
            )
        a, b = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        day = a
        while True:  # ranges may wrap: fri-mon
            days.add(day)
            if day == b:
                break
            day = (day + 1) % 7
    return tuple(sorted(days))


def _hours(value: object) -> tuple[int, int]:
    """``"08:00-18:30"`` -> minutes (480, 1110); the end may be before the start (overnight)."""
    if not isinstance(value, str) or not (m := _HOURS.match(value.strip())):
        raise PydanticCustomError("hours", 'must be a range like "08:00-18:00" (24-hour clock)')
    start = int(m.group(1)) * 60 + int(m.group(2))
    end = int(m.group(3)) * 60 + int(m.group(4))
    if start > 24 * 60 or end > 24 * 60 or start == end:
        raise PydanticCustomError("hours", 'must be a range like "08:00-18:00" (24-hour clock)')
    return start, end


class TimeWindow(BaseModel):
    """``window = { weekdays = ["mon-fri"], hours = "08:00-18:00", timezone = "Europe/Berlin" }``.

    A policy with a window counts only inside it; an overnight range (``"22:00-06:00"``) belongs to the
    weekday it starts on.
    """

    model_config = MODEL_CONFIG

    weekdays: Annotated[tuple[int, ...], BeforeValidator(_weekdays)] = (0, 1, 2, 3, 4, 5, 6)
    hours: Annotated[tuple[int, int], BeforeValidator(_hours)] | None = None
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError(
                "timezone",
                "unknown time zone {value} (use an IANA name like Europe/Berlin)",
                {"value": repr(value)},
            ) from None
        return value


class PolicyRules(BaseModel):
    """The class lists of a policy (also a connection's ``defaults``)."""

    model_config = MODEL_CONFIG

    allow: tuple[PolicyClass, ...] = ()
    approve: tuple[PolicyClass, ...] = ()
    deny: tuple[PolicyClass, ...] = ()
    approvers: tuple[Subject, ...] = ()
    approvals_required: int = Field(default=1, ge=1, le=100)
    #: each ``approvers`` entry must be covered by a different approver (on top of approvals_required)
    one_of_each_group: bool = False
    #: how long a held statement (or an access request) waits for its decision
    approval_timeout: Seconds = Field(default=900.0, gt=0, le=7 * 86400)
    #: what an approval lets through: this exact statement once, or the same statement shape for
    #: ``covers_for`` (this caller, this connection)
    covers: Literal["statement", "shape"] = "statement"
    covers_for: Seconds | None = Field(default=None, gt=0, le=86400)
    #: just in time: the policy counts only for a caller holding an approved access grant of it
    #: (``hoopgw access request``); ``max_grant`` bounds the duration asked for
    jit: bool = False
    max_grant: Seconds = Field(default=8 * 3600.0, gt=0, le=31 * 86400)

    @model_validator(mode="after")
    def _approvers(self) -> PolicyRules:
        if self.approve and not self.approvers:
            raise PydanticCustomError("policy", "approve needs approvers (who decides the held commands)")
        if self.jit and not self.approvers:
            raise PydanticCustomError("policy", "jit needs approvers (who decides the access requests)")
        if self.covers == "shape" and self.covers_for is None:
            raise PydanticCustomError(
                "policy", 'covers = "shape" needs covers_for, how long an approval lasts (like "30m")'
            )
        if self.covers == "statement" and self.covers_for is not None:
            raise PydanticCustomError("policy", 'covers_for applies only with covers = "shape"')
        return self


def _functions(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str) and _FUNC.match(v.lower()) for v in value
    ):
        raise PydanticCustomError("functions", "must be a list of function names like pg_read_file")
    return tuple(v.lower() for v in value)


Functions = Annotated[tuple[str, ...], BeforeValidator(_functions)]


class SqlConfig(BaseModel):
    """``[sql]``: how statements are classified.

    ``admin_functions`` / ``write_functions`` replace the built-in lists (see docs/POLICY.md) when
    given; ``extra_admin_functions`` / ``extra_write_functions`` add to them.
    """

    model_config = MODEL_CONFIG

    admin_functions: Functions | None = None
    write_functions: Functions | None = None
    extra_admin_functions: Functions = ()
    extra_write_functions: Functions = ()
    cache_size: int = Field(default=10_000, ge=0, le=1_000_000)
