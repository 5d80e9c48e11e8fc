"""One line per validation failure: the first offending field, what was given, what is accepted.

Every spec-shaped input (scenario files, cost files, sweep axes, CLI overrides) reports pydantic
errors through ``spec_error_line`` so the wording and the bounds are the same everywhere.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

# pydantic error types -> what the field accepts, in words
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}
NUMBER_TAG, TABLE_TAG = "=number", "=table"
"""Tags of a field that takes a number or a distribution table (scenario.Size); left out of locations."""
_RANGE_TYPES = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def spec_error_line(
    exc: ValidationError, source: str = "spec", at: tuple = (), root: type[BaseModel] | None = None
) -> str:
    """One line naming the first offending field and what is accepted.

    ``at``: where in ``root`` (e.g. ScenarioSpec) the validated model sits, e.g. ("cost",) for a
    CostSpec; ``root`` lets the line state the field's declared range (both bounds, open or closed)
    rather than only the violated one.
    """
    errors = exc.errors()
    err = errors[0]
    where = tuple(x for x in (*at, *err.get("loc", ())) if x not in (NUMBER_TAG, TABLE_TAG))
    loc = ".".join(str(x) for x in where if x != "__root__")
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    kind = err.get("type", "")
    given = err.get("input")
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif kind in _RANGE_TYPES:
        msg = f"{given!r} out of range {range_text(_bounds(root, where, err.get('ctx') or {}))}"
    elif kind == "literal_error":
        msg = f"expected {(err.get('ctx') or {}).get('expected', 'one of the listed values')}, got {given!r}"
    elif kind in _EXPECTED:
        bounds = _bounds(root, where, {})
        within = f" in {range_text(bounds)}" if bounds != _UNBOUNDED else ""
        msg = f"expected {_EXPECTED[kind]}{within}, got {given!r}"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{source}: {loc}: {msg}{more}" if loc else f"{source}: {msg}{more}"  # a whole-spec check names its fields


Bounds = tuple[object, bool, object, bool]  # (lower, lower inclusive, upper, upper inclusive)
_UNBOUNDED: Bounds = ("-inf", False, "inf", False)


def range_text(bounds: Bounds) -> str:
    """``[lo, hi]`` with a round bracket on an open side, e.g. ``(0, 3600]``."""
    lo, lo_closed, hi, hi_closed = bounds
    return f"{'[' if lo_closed else '('}{lo}, {hi}{']' if hi_closed else ')'}"


def _bounds(root: type[BaseModel] | None, loc: tuple, ctx: dict) -> Bounds:
    """The declared bounds of the field at ``loc`` in ``root``; the error's own bound (``ctx``)
    where the declaration cannot be found."""
    lo, lo_closed, hi, hi_closed = _declared(root, loc) if root is not None else _UNBOUNDED
    if lo == "-inf" and ("ge" in ctx or "gt" in ctx):
        lo, lo_closed = (ctx["ge"], True) if "ge" in ctx else (ctx["gt"], False)
    if hi == "inf" and ("le" in ctx or "lt" in ctx):
        hi, hi_closed = (ctx["le"], True) if "le" in ctx else (ctx["lt"], False)
    return lo, lo_closed, hi, hi_closed


def _declared(root: type[BaseModel], loc: tuple) -> Bounds:
    model: type[BaseModel] | None = root
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None:
            return _UNBOUNDED  # inside a tuple or other non-model value: no declared field
        info = model.model_fields.get(str(part))
        if info is None:
            return _UNBOUNDED
        ann = info.annotation
        args = getattr(ann, "__args__", ())
        inner = [getattr(a, "__origin__", a) for a in (ann, *args)]
        model = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
    lo, lo_closed, hi, hi_closed = _UNBOUNDED
    union_meta = [m for a in getattr(getattr(info, "annotation", None), "__args__", ()) for m in getattr(a, "__metadata__", ())]
    for m in (*getattr(info, "metadata", ()), *union_meta):
        if getattr(m, "ge", None) is not None:
            lo, lo_closed = m.ge, True
        elif getattr(m, "gt", None) is not None:
            lo, lo_closed = m.gt, False
        if getattr(m, "le", None) is not None:
            hi, hi_closed = m.le, True
        elif getattr(m, "lt", None) is not None:
            hi, hi_closed = m.lt, False
    return lo, lo_closed, hi, hi_closed
