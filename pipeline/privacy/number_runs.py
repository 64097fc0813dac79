"""What the spoken-number reader (``spoken_numbers.normalize``) hands back: the number
runs it found, each rendered as numerals, and the normalized text with a map from each of
its characters to the words said."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Element", "Normalized", "Run"]


@dataclass(slots=True)
class Element:
    """One rendered number: its digits and the span of the words it came from."""

    digits: str
    start: int
    end: int
    single: bool  # a single spoken digit: joins its neighbours without a space


@dataclass(slots=True)
class Run:
    """A number run: where it is in the original text and its rendered elements."""

    start: int
    end: int
    elements: list[Element]
    rewritten: bool

    @property
    def digits(self) -> str:
        return "".join(e.digits for e in self.elements)


@dataclass(slots=True)
class Normalized:
    """The normalized text and, per character, the original span it stands for."""

    original: str
    text: str
    starts: list[int] = field(repr=False)
    ends: list[int] = field(repr=False)
    runs: list[Run]

    @property
    def changed(self) -> bool:
        return self.text is not self.original

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a span of ``text`` to the span of ``original`` it was made from."""
        if not self.changed:
            return start, end
        if end <= start:
            return self.starts[start], self.starts[start]
        return self.starts[start], self.ends[end - 1]
