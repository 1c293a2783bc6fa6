"""Mergeable accumulators: the state an evaluator or metric aggregates into, shard by shard.

The contract follows torchmetrics' ``Metric`` (``update`` / ``compute`` / merging another instance's
state), without torch and with one stronger promise: **one pass over all items, any chunking of that
pass, and any set of shards merged together give the same numbers, bit for bit.** Floating-point
addition is not associative, so a running float sum cannot keep that promise; an accumulator keeps
instead either an exact representation of its sums (``ExactMean`` below) or the items themselves,
keyed, and computes from them in a canonical order.

A state travels between processes (Ray workers, a service's shards, a resumed run) as ``state()``:
a plain, JSON-serialisable dict (floats as ``float.hex`` strings, so JSON never rounds them), read
back with ``from_state``. ``merge`` takes another accumulator of the same class or such a dict.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

A = TypeVar("A", bound="Accumulator")


class AccumulatorStateError(ValueError):
    """A state dict that does not belong to this accumulator class or version, or is malformed."""


class Accumulator(ABC):
    """Base of every mergeable accumulator.

    Subclasses set ``kind`` (a stable name written into the state) and ``state_version`` (bumped when
    the state's layout changes), and implement ``update``, ``compute``, ``merge``, ``_state_body``
    and ``_from_body``. ``merge(other)`` adds ``other``'s items to ``self`` and returns ``self``;
    ``other`` is left unchanged. Merging two accumulators that saw the same item counts it twice, as
    with torchmetrics: shards must be disjoint (keyed accumulators refuse a key seen on both sides).
    """

    kind: ClassVar[str]
    state_version: ClassVar[int] = 1

    @abstractmethod
    def update(self, item: Any) -> None:
        """Add one item."""

    @abstractmethod
    def compute(self) -> Any:
        """The result over every item added or merged so far; the state is left as it is."""

    @abstractmethod
    def merge(self: A, other: A | Mapping[str, Any]) -> A:
        """Add the items of ``other`` (an accumulator of this class, or its ``state()``); return self."""

    @abstractmethod
    def _state_body(self) -> dict[str, Any]:
        """The class-specific part of ``state()``: JSON-serialisable."""

    @classmethod
    @abstractmethod
    def _from_body(cls: type[A], body: Mapping[str, Any]) -> A:
        """Rebuild an accumulator from what ``_state_body`` returned (after a JSON round trip)."""

    def update_many(self: A, items: Iterable[Any]) -> A:
        for item in items:
            self.update(item)
        return self

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "state_version": self.state_version, **self._state_body()}

    @classmethod
    def from_state(cls: type[A], state: Mapping[str, Any]) -> A:
        if not isinstance(state, Mapping):
            raise AccumulatorStateError(f"{cls.__name__} state must be a dict, got {type(state).__name__}")
        if state.get("kind") != cls.kind or state.get("state_version") != cls.state_version:
            raise AccumulatorStateError(
                f"state of kind {state.get('kind')!r} version {state.get('state_version')!r} is not a "
                f"{cls.__name__} state (kind {cls.kind!r} version {cls.state_version})")
        try:
            return cls._from_body(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise AccumulatorStateError(f"malformed {cls.__name__} state: {exc}") from exc

    @classmethod
    def merged(cls: type[A], parts: Iterable[A | Mapping[str, Any]]) -> A:
        """A new accumulator holding every part (accumulators or states); the parts are not changed."""
        out = cls.empty()
        for part in parts:
            out.merge(part)
        return out

    @classmethod
    def empty(cls: type[A]) -> A:
        return cls()

    def copy(self: A) -> A:
        return type(self).from_state(self.state())

    def _coerce(self: A, other: A | Mapping[str, Any]) -> A:
        """``other`` as an accumulator of this class (a state dict is read with ``from_state``)."""
        if isinstance(other, Mapping):
            return type(self).from_state(other)
        if type(other) is not type(self):
            raise TypeError(f"cannot merge a {type(other).__name__} into a {type(self).__name__}")
        return other


class ExactMean(Accumulator):
    """The mean of a stream of floats, exact and independent of order, chunking and sharding.

    It keeps the sum as Shewchuk's *partials*: a short list of non-overlapping floats whose exact
    (unrounded) sum is the exact sum of every value added -- the algorithm behind ``math.fsum``.
    Adding a value or merging another ``ExactMean`` (adding its partials one by one) keeps that
    invariant, so the state after any sequence of updates and merges represents the same exact
    real number; ``compute()`` rounds it once, with ``math.fsum``, and divides by the count. Hence
    ``compute() == math.fsum(values) / len(values)`` bit for bit, whatever the order or the split.

    Cost: a count and a few floats (for values of similar magnitude, one to three partials; at most
    about 40, the exponent range of float64 divided by its precision). Infinities and NaN are kept
    apart in one float (their sum does not depend on order either); a finite sum past float64's
    range raises ``OverflowError``, as ``math.fsum`` does.
    """

    kind = "exact-mean"
    __slots__ = ("partials", "special", "n")

    def __init__(self) -> None:
        self.partials: list[float] = []
        self.special = 0.0  # sum of the non-finite values (0.0, +-inf or nan)
        self.n = 0

    def update(self, item: float) -> None:
        self.n += 1
        self._add(float(item))

    add = update

    def _add(self, x: float) -> None:
        if not math.isfinite(x):
            self.special += x
            return
        partials = self.partials
        i = 0
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            if math.isinf(hi):
                raise OverflowError("intermediate overflow in an exact sum")
            lo = y - (hi - x)
            if lo:
                partials[i] = lo
                i += 1
            x = hi
        partials[i:] = [x]

    def merge(self, other: ExactMean | Mapping[str, Any]) -> ExactMean:
        other = self._coerce(other)
        for p in list(other.partials):  # a copy: merging an accumulator into itself is allowed
            self._add(p)
        self.special += other.special
        self.n += other.n
        return self

    def sum(self) -> float:
        """The exact sum, correctly rounded to a float."""
        return math.fsum([*self.partials, self.special])

    def compute(self) -> float | None:
        return self.sum() / self.n if self.n else None

    value = compute

    def _state_body(self) -> dict[str, Any]:
        return {"n": self.n, "partials": [p.hex() for p in self.partials], "special": self.special.hex()}

    @classmethod
    def _from_body(cls, body: Mapping[str, Any]) -> ExactMean:
        out = cls()
        n = body["n"]
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"count {n!r} is not a non-negative int")
        out.n = n
        for p in body["partials"]:
            out._add(float.fromhex(p))  # re-added, not trusted: any list of floats gives a valid state
        out.special = float.fromhex(body["special"])
        return out

    def __repr__(self) -> str:
        return f"ExactMean(n={self.n}, mean={self.compute()!r})"


__all__ = ["Accumulator", "AccumulatorStateError", "ExactMean"]
