"""Per-stream state follows one protocol (LiberTEM-UDF style): ``process`` one frame's item, ``results`` for the
stream now, ``merge`` another accumulator of the same kind (workers, or state rebuilt from the store), and
``rebuild`` from the store's recent documents after a restart.

Series (trends, cumulative PSD, alerts) and the rolling shift window implement it; the pipeline only knows this
protocol, so it can feed, rebuild and merge state without knowing what the state is.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol, TypeVar, runtime_checkable

Item = TypeVar("Item", contravariant=True)


@runtime_checkable
class Accumulator(Protocol[Item]):
    """State per stream, updated frame by frame."""

    def process(self, stream: str, item: Item) -> Any:
        """Fold one frame's item into the stream's state; return what this frame adds (may be None)."""

    def results(self, stream: str) -> Any:
        """What the stream's state says now."""

    def merge(self, other: "Accumulator[Item]") -> None:
        """Fold another accumulator's state into this one, where that is meaningful (else raise TypeError)."""

    def rebuild(self, stream: str, documents: Iterable[dict]) -> None:
        """Restore the stream's state from its recent result documents (oldest first, as JSON dicts)."""
