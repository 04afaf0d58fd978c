"""RFC 7396 JSON merge patches between views, and the series appends that ride beside them.

Pure functions on plain JSON values (dicts, lists, str, numbers, bool, None).

RFC 7396 reads ``null`` in a patch as "delete this member", so it cannot set a member *to* null. The
view therefore has a canonical form in which objects hold no ``null`` members: a missing member means
unknown, exactly as ``null`` would (docs/view.md). :func:`canonical` produces that form; with it,
applying ``diff(a, b)`` to ``a`` gives exactly ``b``. Lists are replaced whole, so ``null`` inside a
list (a series point with an unknown value) is kept as it is.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["DEFAULT_ERRORS_LEN", "DEFAULT_SERIES_LEN", "Canonical", "apply_append", "apply_errors",
           "apply_view_patch", "canonical", "diff", "merge_patch", "meta_len"]

#: ``meta.series_len`` / ``meta.errors_len`` when a view does not say (docs/view.md)
DEFAULT_SERIES_LEN: Final = 900
DEFAULT_ERRORS_LEN: Final = 50


class Canonical(dict[str, Any]):
    """A dict already in canonical form, never mutated once built: :func:`canonical` takes it as it
    is, and :func:`diff` skips it at once when the previous view holds the same object. A section
    builder that caches the part of the view an unchanged subject contributes (an instance that sent
    nothing new) makes that part cost nothing per tick."""

    __slots__ = ()


def canonical(value: Any) -> Any:
    """``value`` with every ``null`` member of every object removed (lists are left as they are)."""
    if type(value) is Canonical:
        return value
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items() if v is not None}
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7396 merge patch; returns the new value (``target`` is not mutated)."""
    if not isinstance(patch, dict):
        return patch
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def diff(old: Any, new: Any) -> Any:
    """The merge patch that turns canonical ``old`` into canonical ``new``; ``{}`` when equal."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    return _diff(old, new)


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    # The hot path of every tick (a patch of 2,000 changed instances holds ~46,000 values): no set of
    # removed keys unless some key is gone, and exact type checks before isinstance.
    out: dict[str, Any] = {}
    found = 0
    for key, value in new.items():
        if key in old:
            found += 1
            before = old[key]
            if before is value:  # the same object (a cached Canonical part): unchanged
                continue
            tv = type(value)
            if (tv is dict or tv is Canonical) and isinstance(before, dict):
                # recurse without comparing first: a deep == here would walk the subtree twice
                sub = _diff(before, value)
                if sub:
                    out[key] = sub
                continue
            if before == value:
                continue
        out[key] = value  # new, or replaced (a dict over a non-dict merges onto {}: same result)
    if found != len(old):  # keys gone: their nulls first, as before (the recorded streams' bytes)
        gone: dict[str, Any] = {key: None for key in old if key not in new}
        gone.update(out)
        return gone
    return out


def compose(first: Any, then: Any) -> Any:
    """One merge patch that does what applying ``first`` and then ``then`` does (RFC 7396 patches
    compose: a later member wins, a later null deletes, objects merge member by member)."""
    if not isinstance(then, dict) or not isinstance(first, dict):
        return then
    out = dict(first)
    for key, value in then.items():
        before = out.get(key)
        out[key] = compose(before, value) if isinstance(value, dict) and isinstance(before, dict) else value
    return out


def apply_append(series: dict[str, list[Any]], append: dict[str, Any], max_len: int) -> None:
    """Push each appended ``[ts, value]`` point onto its series, keeping at most ``max_len`` points."""
    for name, point in append.items():
        points = series.setdefault(name, [])
        points.append(list(point))
        excess = len(points) - max_len
        if excess > 0:
            del points[:excess]


def apply_errors(state: dict[str, Any], entries: list[Any], max_len: int) -> dict[str, Any]:
    """Put new error-feed entries (newest first) at the front of ``state.errors.errors``, keeping
    ``max_len``; returns the new state (``state`` is not mutated).

    The feed travels beside the merge patch because RFC 7396 replaces a list whole: one new error
    would otherwise resend all fifty.
    """
    if not entries:
        return state
    errors = state.get("errors")
    errors = dict(errors) if isinstance(errors, dict) else {}
    old = errors.get("errors")
    errors["errors"] = (list(entries) + (old if isinstance(old, list) else []))[:max_len]
    new = dict(state)
    new["errors"] = errors
    return new


def meta_len(state: Any, key: str, default: int) -> int:
    """``state.meta.<key>`` when it is a positive int, else ``default``."""
    meta = state.get("meta") if isinstance(state, dict) else None
    n = meta.get(key) if isinstance(meta, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else default


def apply_view_patch(state: dict[str, Any], patch: Any, append: dict[str, Any] | None = None,
                     errors: list[Any] | None = None) -> dict[str, Any]:
    """One tick's change applied to a view (docs/view.md "Applying a patch"): the merge patch, then the
    series points (keeping ``meta.series_len``), then the new feed entries (keeping ``meta.errors_len``).

    Returns the new view; ``state`` is not mutated, and lists it shares with the result are never
    changed in place (a store may hand the old view to readers while the new one is built)."""
    merged = merge_patch(state, patch if isinstance(patch, dict) else {})
    new: dict[str, Any] = merged if isinstance(merged, dict) else {}
    if append:
        old = new.get("series")
        series: dict[str, Any] = dict(old) if isinstance(old, dict) else {}
        for name in append:
            if isinstance(series.get(name), list):
                series[name] = list(series[name])
        apply_append(series, append, meta_len(new, "series_len", DEFAULT_SERIES_LEN))
        new["series"] = series
    if errors:
        new = apply_errors(new, errors, meta_len(new, "errors_len", DEFAULT_ERRORS_LEN))
    return new
