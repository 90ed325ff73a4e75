"""AU grammar parser: every spelling of peers_and_datasets.md §2.8, AU vectors and FACS text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from microexpr.data.au import (
    AU21_ORDER,
    AUItem,
    ParsedAUs,
    au_vector,
    codes_outside,
    describe_aus,
    facs_description,
    facs_table,
    parse_au_string,
)

# (cell, canonical items, unparsed tokens) - one row per grammar form.
GRAMMAR_CASES = [
    ("4+7", ("4", "7"), ()),
    ("12+15 ", ("12", "15"), ()),  # trailing space
    ("AU4 + R12C", ("4", "R12C"), ()),  # AU prefix, spaces around +, side + intensity
    ("au 4", ("4",), ()),
    ("L10", ("L10",), ()),
    ("R12", ("R12",), ()),
    ("A12", ("A12",), ()),  # SAMM A/B/T prefixes
    ("B18", ("B18",), ()),
    ("T18+39", ("T18", "39"), ()),
    ("A/L12", ("A/L12",), ()),
    ("12L", ("L12",), ()),  # MMEW suffix side -> canonical prefix
    ("10R", ("R10",), ()),
    ("4R+7", ("R4", "7"), ()),
    ("4D+9B", ("4D", "9B"), ()),  # intensity
    ("43E", ("43E",), ()),
    ("10A/B", ("10A/B",), ()),  # intensity range
    ("R12C", ("R12C",), ()),
    ("(R6 or R12)+R15", ("R6|or1", "R12|or1", "R15"), ()),  # alternatives
    ("L12 or L14", ("L12|or1", "L14|or1"), ()),
    ("R14A or 17A or 24A", ("R14A|or1", "17A|or1", "24A|or1"), ()),
    ("ref(7B)+43", ("ref(7B)", "43"), ()),  # wrapper
    ("12A+ref(24)", ("12A", "ref(24)"), ()),
    ("AU4(k)+AU7", ("4?", "7"), ()),  # 4DME uncertain marker
    ("12 or 14(k)", ("12|or1", "14?|or1"), ()),  # (k) binds to its own unit
    ("1,L2", ("1", "L2"), ()),  # ASCII comma
    ("4，7", ("4", "7"), ()),  # full-width comma (CAS(ME)^3 C)
    ("4＋R12", ("4", "R12"), ()),  # full-width plus
    ("R14+17+soft focus", ("R14", "17"), ("soft focus",)),  # free text kept as unparsed
    ("soft focus", (), ("soft focus",)),
    ("12/14", (), ("12/14",)),
    ("ref(7B", (), ("ref(7B",)),  # unbalanced parenthesis: reported whole
    ("(k)", (), ("(k)",)),
    ("0+100+L12R", (), ("0", "100", "L12R")),  # AU 0, three digits, two sides
    ("12+", ("12",), ()),  # empty term carries nothing
]


@pytest.mark.parametrize(("cell", "canonical", "unparsed"), GRAMMAR_CASES)
def test_grammar_forms(cell: str, canonical: tuple[str, ...], unparsed: tuple[str, ...]) -> None:
    parsed = parse_au_string(cell)
    assert parsed.canonical == canonical
    assert parsed.unparsed == unparsed


@pytest.mark.parametrize("cell", [4, np.int64(4), 4.0, np.float64(4.0), "4", "4.0", " AU4 "])
def test_int_float_and_string_cells_agree(cell: object) -> None:
    assert parse_au_string(cell).items == (AUItem(au=4, raw="AU4" if "AU" in str(cell) else "4"),)


def test_non_integral_float_is_reported_not_truncated() -> None:
    parsed = parse_au_string(12.5)
    assert parsed.items == ()
    assert parsed.unparsed == ("12.5",)


@pytest.mark.parametrize("cell", [None, float("nan"), np.nan, pd.NA, "", "   ", "nan"])
def test_empty_cells_give_empty_result(cell: object) -> None:
    parsed = parse_au_string(cell)
    assert parsed == ParsedAUs()
    assert parsed.is_empty
    assert parsed.codes == ()


def test_laterality_both_sides_and_intensity_fields() -> None:
    prefix, suffix, samm = parse_au_string("R12C+12L+A/L10A/B").items
    assert (prefix.au, prefix.side, prefix.intensity) == (12, "R", "C")
    assert (suffix.au, suffix.side, suffix.intensity, suffix.raw) == (12, "L", None, "12L")
    assert (samm.au, samm.side, samm.intensity) == (10, "A/L", "A/B")


def test_suffix_side_and_intensity_in_either_order() -> None:
    assert parse_au_string("12LC").canonical == parse_au_string("12CL").canonical == ("L12C",)


def test_alternative_groups_are_shared_within_and_distinct_across() -> None:
    items = parse_au_string("(R6 or R12)+R15+(L1 or L2)").items
    groups = [i.alternative_group for i in items]
    assert groups[0] == groups[1] is not None
    assert groups[2] is None
    assert groups[3] == groups[4] is not None
    assert groups[3] != groups[0]
    assert not items[0].definite and items[2].definite


def test_reference_and_uncertain_flags() -> None:
    ref, plain = parse_au_string("ref(7B)+43").items
    assert ref.reference and ref.au == 7 and ref.intensity == "B"
    assert not plain.reference
    (uncertain,) = parse_au_string("AU4(k)").items
    assert uncertain.uncertain and not uncertain.reference


def test_codes_are_sorted_unique_and_definite_codes_skip_markers() -> None:
    parsed = parse_au_string("R12+L12+4+(6 or 9)+ref(7)+AU10(k)")
    assert parsed.codes == (4, 6, 7, 9, 10, 12)
    assert parsed.definite_codes == (4, 12)
    assert parsed.text == "R12+L12+4+6|or1+9|or1+ref(7)+10?"


def test_unparsed_tokens_are_never_dropped() -> None:
    parsed = parse_au_string("4+??+soft focus+L12")
    assert parsed.codes == (4, 12)
    assert parsed.unparsed == ("??", "soft focus")


def test_au_vector_order_and_laterality_dropped() -> None:
    left, right = au_vector(parse_au_string("L12+4")), au_vector(parse_au_string("12R+AU4"))
    assert left == right
    assert len(left) == 21
    assert [au for au, bit in zip(AU21_ORDER, left, strict=True) if bit] == [4, 12]


def test_au_vector_ignores_unrepresentable_and_respects_definite_only() -> None:
    parsed = parse_au_string("L2+26+38+(6 or 12)")
    assert codes_outside(parsed) == (38,)
    assert sum(au_vector(parsed)) == 4
    assert sum(au_vector(parsed, definite_only=True)) == 2
    assert au_vector(parsed, order=(38, 2)) == [1, 1]


def test_facs_descriptions_from_packaged_data() -> None:
    assert facs_description(6) == "Cheek Raiser"
    assert facs_description(12) == "Lip Corner Puller"
    table = facs_table()
    assert set(AU21_ORDER) <= set(table)
    # AUs of the attribute paper's Table II (../shared/papers/004).
    assert {
        1,
        2,
        4,
        5,
        6,
        7,
        9,
        10,
        11,
        12,
        13,
        14,
        15,
        16,
        17,
        18,
        20,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        41,
        42,
        43,
        44,
        45,
        46,
    } <= set(table)
    assert all(name and name[0].isupper() for name in table.values())


def test_facs_description_unknown_au_names_it() -> None:
    with pytest.raises(KeyError, match="AU99"):
        facs_description(99)


def test_describe_aus_for_attribute_text() -> None:
    assert describe_aus(parse_au_string("R12+6")) == "cheek raiser, lip corner puller"
    assert describe_aus(parse_au_string("(R6 or R12)+R15")) == (
        "cheek raiser or lip corner puller, lip corner depressor"
    )
    assert describe_aus(parse_au_string("L12+R12")) == "lip corner puller"
    assert describe_aus(parse_au_string("4+ref(7)"), definite_only=True) == "brow lowerer"
    assert describe_aus(parse_au_string(None)) == ""
