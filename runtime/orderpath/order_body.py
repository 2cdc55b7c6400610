"""Reading an order from the body of ``POST /orders``: strict JSON first, then :class:`.orders.OrderRequest`.

The intake refuses ambiguity: a body with the same key twice (at any depth) is refused naming the
key, because a gateway, a risk check or a log viewer that reads the first occurrence would see a
different order from the one executed; ``quantity`` must be a JSON integer (not ``"10"``, not
``1.0``); prices are JSON strings or numbers, kept exactly as sent; numbers no order field could
hold are refused before pydantic spends minutes on them. Every failing field is named, with why
(:func:`validation_fields`), so a client can fix them all at once.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from tradeops.runtime.orderpath.orders import OrderRequest
from tradeops.runtime.platform.errors import BadInput

__all__ = ["BodyRefused", "parse_order", "validation_fields"]


class BodyRefused(BadInput):
    """The body is not an order the intake takes: ``status`` 400 (not one JSON object with unique keys)
    or 422 (an order that breaks a rule), with one ``{field, reason}`` per failing field."""

    def __init__(self, status: int, message: str, *, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.fields = fields


def validation_fields(exc: ValidationError) -> list[dict[str, str]]:
    """One ``{field, reason}`` per failing field; rules spanning fields are named after the field they
    require or forbid (``limit_price``)."""
    reasons: dict[str, list[str]] = {}
    for err in exc.errors():
        ctx_error = (err.get("ctx") or {}).get("error")
        reason = str(ctx_error) if ctx_error is not None else err["msg"]
        if err["loc"]:
            field = str(err["loc"][0])
        else:
            # A model-level rule; its message starts with the field it is about.
            first = reason.split(" ", 1)[0]
            field = first if first in OrderRequest.model_fields else "order"
        if reason not in reasons.setdefault(field, []):
            reasons[field].append(reason)
    return [{"field": field, "reason": "; ".join(rs)} for field, rs in reasons.items()]


class _OutOfRange:
    """A JSON number no order field can hold; kept away from pydantic (see ``_json_float``)."""

    def __init__(self, text: str) -> None:
        self.text = text


_NUMBER_DIGITS_LIMIT = 100


def _json_float(text: str) -> Decimal | _OutOfRange:
    """JSON fractions as Decimal, exactly as sent; absurd magnitudes are marked, not converted.

    pydantic needs minutes to decide that 1e-999999999 is not a quantity, and lets it pass as a
    price with "at most 6 decimal places"; no order field needs a hundred digits.
    """
    value = Decimal(text)
    return _OutOfRange(text) if abs(value.adjusted()) > _NUMBER_DIGITS_LIMIT else value


def _json_int(text: str) -> int | _OutOfRange:
    return _OutOfRange(text) if len(text) > _NUMBER_DIGITS_LIMIT else int(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when a key repeats (json.loads would silently keep the last one)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _screen(data: dict[str, Any]) -> dict[str, str]:
    """Problems found before pydantic: numbers out of range, and type confusions its lax mode
    would let through (`"quantity": true` is not one share)."""
    problems = {}
    for field, value in data.items():
        if isinstance(value, _OutOfRange) and field in OrderRequest.model_fields:
            problems[field] = "number is out of range"
    for field in ("quantity", "limit_price", "quote_price"):
        if isinstance(data.get(field), bool):
            problems[field] = "must be a number, not true/false"
    quantity = data.get("quantity")
    if "quantity" in data and "quantity" not in problems and not isinstance(quantity, int | _OutOfRange):
        # A share count is a JSON integer: "10" and 1.0 are ambiguous (lax parsing would take them).
        problems["quantity"] = "must be a JSON integer (a whole number, no quotes, no decimal point)"
    if "synthetic" in data and not isinstance(data["synthetic"], bool):
        problems["synthetic"] = "must be true or false"
    return problems


def _money_problems(req: OrderRequest) -> dict[str, str]:
    """The price rules re-checked on the parsed value: pydantic's digit count overflows on extreme
    exponents (a string like "1e-999999999" passes it)."""
    problems = {}
    for field in ("limit_price", "quote_price"):
        value: Decimal | None = getattr(req, field)
        if value is None:
            continue
        # Places counted from the digits themselves: normalize() would round such a value to 0.
        _, digits, exponent = value.as_tuple()
        significant = "".join(map(str, digits)).rstrip("0")
        if isinstance(exponent, int) and significant and exponent + len(digits) - len(significant) < -6:
            problems[field] = "Decimal input should have no more than 6 decimal places"
        elif value.adjusted() >= 12:
            problems[field] = "Decimal input should have no more than 12 digits before the decimal point"
    return problems


def parse_order(body: bytes) -> OrderRequest:
    """The order in a POST body, or BodyRefused: 400 for a body that is not one JSON object with unique
    keys, 422 naming every field that breaks a rule."""
    try:
        # NaN/Infinity are Python's extensions, not JSON.
        data = json.loads(body, parse_float=_json_float, parse_int=_json_int,
                          parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except _DuplicateKey as dup:
        raise BodyRefused(400, f"duplicate key {dup.key!r} in the body: each key may appear once") from None
    except (ValueError, RecursionError):
        raise BodyRefused(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise BodyRefused(400, "body must be a JSON object (one order)")
    problems = _screen(data)
    fields: list[dict[str, str]] = []
    try:
        req = OrderRequest.model_validate(data)
    except ValidationError as exc:
        fields = validation_fields(exc)
    except OverflowError:
        # OrderRequest's UTC conversion of placed_at overflows at the ends of the calendar
        # (0001-01-01T00:00+14:00); it is the only date arithmetic in the model.
        fields = [{"field": "placed_at", "reason": "is out of range"}]
    else:
        problems.update(_money_problems(req))
    if fields or problems:
        for entry in fields:
            entry["reason"] = problems.pop(entry["field"], entry["reason"])
        fields += [{"field": f, "reason": r} for f, r in problems.items()]
        raise BodyRefused(422, "invalid order", fields=fields)
    return req
