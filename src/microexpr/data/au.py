"""FACS action-unit strings -> structured AU items (interface; implemented by the AU-parser work item).

Contract used by the index builder:
    parse_au_string(cell) -> ParsedAUs
      .items     tuple[AUItem, ...]  every AU found, in order, laterality and intensity kept
      .unparsed  tuple[str, ...]     tokens that could not be parsed (reported, never silently dropped)
      .codes     tuple[int, ...]     sorted unique AU numbers
      .canonical tuple[str, ...]     e.g. ("L2", "AU12C") - one stable string per item, for the index
    facs_description(au: int) -> str  FACS name ("Cheek Raiser") from the packaged data file
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AUItem:
    au: int
    side: str | None = None  # "L", "R", or SAMM's "A"/"B"/"T" prefixes, as written
    intensity: str | None = None  # "A".."E" or a range like "A/B"
    alternative_group: int | None = None  # items of one "x or y" share a group number
    uncertain: bool = False  # 4DME "(k)"
    reference: bool = False  # SAMM "ref(...)"
    raw: str = ""


@dataclass(frozen=True)
class ParsedAUs:
    items: tuple[AUItem, ...] = ()
    unparsed: tuple[str, ...] = ()

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(sorted({i.au for i in self.items}))


def parse_au_string(cell: object) -> ParsedAUs:
    raise NotImplementedError


def facs_description(au: int) -> str:
    raise NotImplementedError
