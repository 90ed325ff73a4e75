"""FACS action-unit cells of MER annotation sheets -> structured AU items, AU vectors and FACS text.

One parser for every spelling seen in CASME II, SAMM, MMEW, CAS(ME)^3 and 4DME sheets
(../shared/reference/peers_and_datasets.md §2.8). It is a small tokenizer plus one regular expression per token,
not one giant pattern, so each rule below is one function.

Grammar (case-insensitive; the cell is first NFKC-normalised, so the full-width ``，＋（）`` become ``,+()``)::

    cell         := expr | <empty> | NaN | None | number        (Excel ints/floats: 4, 12.0 -> "4", "12")
    expr         := term (("+" | ",") term)*                    (split only outside parentheses)
    term         := unit "(k)"                                  4DME uncertain marker   -> uncertain=True
                  | "ref(" expr ")"                             SAMM wrapper            -> reference=True
                  | unit (" or " unit)+                         alternatives            -> one alternative_group
                  | "(" expr ")"
                  | atom
    atom         := ["AU"] [side] number [suffix_side] [intensity]   (suffix side and intensity in either order)
    side         := "L" | "R" | "A" | "B" | "T" | "A/L" | "A/R"      (SAMM writes A/B/T; kept as written)
    suffix_side  := "L" | "R"                                         (MMEW: 12L, 10R, 4R)
    intensity    := [A-E] | [A-E] "/" [A-E]                           (SAMM: 4D, 7B, 10A/B)
    number       := 1..99

Whitespace is allowed around separators, after "AU" and between a prefix side and the number (``au 4``,
``AU4 + R12C``). Anything else - free text such as ``soft focus``, ``12/14``, unbalanced parentheses - is kept
verbatim in ``ParsedAUs.unparsed``; nothing is dropped or guessed. Empty terms (``12+``) carry no information and
are skipped.

Canonical item strings (``AUItem.canonical``, ``ParsedAUs.canonical``), stable across spellings::

    [side][number][intensity]   then "?" if uncertain, then wrapped in "ref(...)" if reference,
                                then "|or<g>" if the item belongs to alternative group g (1-based, per cell)

e.g. ``12L`` -> ``L12``; ``R12C`` -> ``R12C``; ``10A/B`` -> ``10A/B``; ``AU4(k)`` -> ``4?``;
``ref(7B)`` -> ``ref(7B)``; ``(R6 or R12)+R15`` -> ``R6|or1``, ``R12|or1``, ``R15``.
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources

import pandas as pd
import yaml

# AU order of the 21-d binary AU vector of the CVA+FPF model (reference_models.md §2.1).
AU21_ORDER: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 18, 20, 23, 24, 25, 26, 28, 45)

FACS_DATA_FILE = "facs_aus.yml"

_ATOM = re.compile(
    r"""^(?:AU\s*)?
        (?P<side>A/[LR]|[LRABT])?\s*
        (?P<num>\d{1,2})
        (?:(?P<suf1>[LR])(?P<int1>[A-E](?:/[A-E])?)?
          |(?P<int2>[A-E](?:/[A-E])?)(?P<suf2>[LR])?)?$""",
    re.IGNORECASE | re.VERBOSE,
)
_UNCERTAIN = re.compile(r"^(?P<body>.*?)\s*\(\s*k\s*\)$", re.IGNORECASE)
_REFERENCE = re.compile(r"^ref\s*\((?P<body>.*)\)$", re.IGNORECASE | re.DOTALL)
_OR = re.compile(r"\s+or\s+", re.IGNORECASE)
_INTEGRAL_TEXT = re.compile(r"^\d+\.0+$")
_EMPTY_TEXTS = frozenset({"", "nan", "none"})


@dataclass(frozen=True)
class AUItem:
    """One action unit as annotated; ``raw`` is the atom as written (``12L``, ``R12C``)."""

    au: int
    side: str | None = None  # "L"/"R" (prefix or suffix), or SAMM's "A"/"B"/"T"/"A/L" prefixes as written
    intensity: str | None = None  # "A".."E" or a range like "A/B"
    alternative_group: int | None = None  # items of one "x or y" share a group number (1-based, per cell)
    uncertain: bool = False  # 4DME "(k)"
    reference: bool = False  # SAMM "ref(...)"
    raw: str = ""

    @property
    def definite(self) -> bool:
        """True when the item is neither an alternative, a ``ref(...)`` nor ``(k)``-uncertain."""
        return self.alternative_group is None and not self.uncertain and not self.reference

    @property
    def canonical(self) -> str:
        """Stable string for the item; format in the module docstring."""
        text = f"{self.side or ''}{self.au}{self.intensity or ''}"
        if self.uncertain:
            text += "?"
        if self.reference:
            text = f"ref({text})"
        if self.alternative_group is not None:
            text += f"|or{self.alternative_group}"
        return text


@dataclass(frozen=True)
class ParsedAUs:
    """Every AU item found in one cell, in order, plus the tokens that could not be parsed."""

    items: tuple[AUItem, ...] = ()
    unparsed: tuple[str, ...] = ()

    @property
    def codes(self) -> tuple[int, ...]:
        """Sorted unique AU numbers of all items (alternatives, references and uncertain ones included)."""
        return tuple(sorted({i.au for i in self.items}))

    @property
    def definite_codes(self) -> tuple[int, ...]:
        """Sorted unique AU numbers of the definite items only (see ``AUItem.definite``)."""
        return tuple(sorted({i.au for i in self.items if i.definite}))

    @property
    def canonical(self) -> tuple[str, ...]:
        """One canonical string per item, in cell order (format in the module docstring)."""
        return tuple(i.canonical for i in self.items)

    @property
    def text(self) -> str:
        """The canonical strings joined by "+" (empty string when there are no items)."""
        return "+".join(self.canonical)

    @property
    def is_empty(self) -> bool:
        return not self.items and not self.unparsed


def parse_au_string(cell: object) -> ParsedAUs:
    """Parse one annotation cell (str, int, float, None, NaN) into AU items; never raises on bad content."""
    text = _cell_text(cell)
    if text is None:
        return ParsedAUs()
    parser = _Parser()
    parser.expr(text, _Context())
    return ParsedAUs(items=tuple(parser.items), unparsed=tuple(parser.unparsed))


def au_vector(
    parsed: ParsedAUs, order: Sequence[int] = AU21_ORDER, *, definite_only: bool = False
) -> list[int]:
    """Binary AU presence vector in ``order`` (laterality and intensity dropped; AUs outside ``order`` ignored,
    see ``codes_outside``). ``definite_only`` leaves out alternatives, ``ref(...)`` and ``(k)`` items."""
    present = set(parsed.definite_codes if definite_only else parsed.codes)
    return [int(au in present) for au in order]


def codes_outside(parsed: ParsedAUs, order: Sequence[int] = AU21_ORDER) -> tuple[int, ...]:
    """AU numbers of ``parsed`` that a vector in ``order`` cannot represent (e.g. AU38 for the 21-d vector)."""
    allowed = set(order)
    return tuple(au for au in parsed.codes if au not in allowed)


def facs_table() -> dict[int, str]:
    """A copy of the FACS name table (AU number -> name) from the packaged data file."""
    return dict(_facs_table())


def facs_description(au: int) -> str:
    """FACS name of an action unit, e.g. 6 -> "Cheek Raiser"; KeyError naming the AU and the data file if unknown."""
    table = _facs_table()
    if au not in table:
        raise KeyError(f"AU{au} has no FACS name in microexpr/data/{FACS_DATA_FILE} (known: {sorted(table)})")
    return table[au]


def describe_aus(parsed: ParsedAUs, *, definite_only: bool = False) -> str:
    """Lower-case FACS text for the attribute-text model: "cheek raiser, lip corner puller".

    Units are sorted by AU number and de-duplicated (laterality and intensity dropped), so the same AU set always
    gives the same text; an alternative group becomes "a or b". An AU missing from the FACS table is written
    "au<n>". No AUs -> "".
    """
    units: dict[tuple[int, ...], None] = {}
    groups: dict[int, list[int]] = {}
    for item in parsed.items:
        if definite_only and not item.definite:
            continue
        if item.alternative_group is None:
            units[(item.au,)] = None
        else:
            groups.setdefault(item.alternative_group, [])
            if item.au not in groups[item.alternative_group]:
                groups[item.alternative_group].append(item.au)
    for members in groups.values():
        units[tuple(sorted(members))] = None
    table = _facs_table()
    texts = [
        " or ".join(table.get(au, f"AU{au}").lower() for au in unit)
        for unit in sorted(units, key=lambda u: (u[0], len(u), u))
    ]
    return ", ".join(texts)


@cache
def _facs_table() -> dict[int, str]:
    raw = yaml.safe_load(
        resources.files("microexpr.data").joinpath(FACS_DATA_FILE).read_text(encoding="utf-8")
    )
    return {int(au): str(name) for au, name in raw["action_units"].items()}


@dataclass(frozen=True)
class _Context:
    """Markers inherited from enclosing wrappers while descending into a term."""

    group: int | None = None
    uncertain: bool = False
    reference: bool = False


def _cell_text(cell: object) -> str | None:
    """Cell -> normalised text, or None for an empty cell. Excel numbers become their integer text."""
    if cell is None:
        return None
    if isinstance(cell, bool):
        return str(cell)
    if isinstance(cell, numbers.Integral):  # int and numpy integers
        return str(int(cell))
    if isinstance(cell, numbers.Real):  # float and numpy floats
        value = float(cell)
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else str(value)
    if not isinstance(cell, str):
        if _is_missing(cell):
            return None
        cell = str(cell)
    text = unicodedata.normalize("NFKC", cell).strip()
    if text.lower() in _EMPTY_TEXTS:
        return None
    if _INTEGRAL_TEXT.match(text):
        return text.split(".")[0]
    return text


def _is_missing(cell: object) -> bool:
    """pandas' NA/NaT and friends, without treating containers as missing."""
    try:
        result = pd.isna(cell)
    except (TypeError, ValueError):
        return False
    return result is True or (isinstance(result, bool) and result)


def _split_top_level(text: str, separators: str = "+,") -> list[str] | None:
    """Split at separators outside parentheses; None when the parentheses do not balance."""
    parts: list[str] = []
    depth = 0
    start = 0
    for pos, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return None
        elif char in separators and depth == 0:
            parts.append(text[start:pos])
            start = pos + 1
    if depth != 0:
        return None
    parts.append(text[start:])
    return parts


def _split_or(term: str) -> list[str]:
    """Split a term at " or " outside parentheses (the term's parentheses are already balanced)."""
    depth_at = [0] * (len(term) + 1)
    depth = 0
    for pos, char in enumerate(term):
        depth += char == "("
        depth -= char == ")"
        depth_at[pos + 1] = depth
    parts: list[str] = []
    start = 0
    for match in _OR.finditer(term):
        if depth_at[match.start()] == 0:
            parts.append(term[start : match.start()])
            start = match.end()
    parts.append(term[start:])
    return parts


def _is_wrapped(term: str) -> bool:
    """True for "( ... )" where the first parenthesis closes at the very end."""
    if not (term.startswith("(") and term.endswith(")")):
        return False
    depth = 0
    for pos, char in enumerate(term):
        depth += char == "("
        depth -= char == ")"
        if depth == 0 and pos < len(term) - 1:
            return False
    return True


class _Parser:
    """Collects items and unparsed tokens of one cell while applying the term rules recursively."""

    def __init__(self) -> None:
        self.items: list[AUItem] = []
        self.unparsed: list[str] = []
        self._last_group = 0

    def expr(self, text: str, ctx: _Context) -> None:
        terms = _split_top_level(text)
        if terms is None:
            self.unparsed.append(text.strip())
            return
        for term in terms:
            self.term(term.strip(), ctx)

    def term(self, term: str, ctx: _Context) -> None:
        """Term rules of the module docstring, in order: or-alternatives, (k), ref(...), (...), atom."""
        if not term:
            return
        options = [option.strip() for option in _split_or(term)]
        if len(options) > 1:
            if not all(options):
                self.unparsed.append(term)
                return
            if ctx.group is None:
                self._last_group += 1
                ctx = replace(ctx, group=self._last_group)
            for option in options:
                self.term(option, ctx)
            return
        if m := _UNCERTAIN.match(term):
            body = m.group("body").strip()
            if body:
                self.term(body, replace(ctx, uncertain=True))
            else:
                self.unparsed.append(term)
            return
        m = _REFERENCE.match(term)
        if m and m.group("body").strip() and _split_top_level(m.group("body")) is not None:
            self.expr(m.group("body"), replace(ctx, reference=True))
            return
        if _is_wrapped(term):
            self.expr(term[1:-1], ctx)
            return
        item = _parse_atom(term, ctx)
        if item is None:
            self.unparsed.append(term)
        else:
            self.items.append(item)


def _parse_atom(token: str, ctx: _Context) -> AUItem | None:
    m = _ATOM.match(token)
    if m is None:
        return None
    number = int(m.group("num"))
    prefix = m.group("side")
    suffix = m.group("suf1") or m.group("suf2")
    if number < 1 or (prefix and suffix):
        return None
    side = (prefix or suffix or "").upper() or None
    intensity = (m.group("int1") or m.group("int2") or "").upper() or None
    return AUItem(
        au=number,
        side=side,
        intensity=intensity,
        alternative_group=ctx.group,
        uncertain=ctx.uncertain,
        reference=ctx.reference,
        raw=token,
    )
