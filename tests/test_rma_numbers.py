"""RMA numbers: generation, parsing, display, and what the check character detects."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rma.numbers import (
    ALPHABET,
    LENGTH,
    RmaParse,
    check_character,
    format_rma_number,
    looks_like_rma,
    new_rma_number,
    normalize_rma_input,
    parse_rma_number,
    random_symbols,
)

VALID = "R7K4M9QX2V"
SAMPLE_SIZE = 300

bodies = st.text(alphabet=ALPHABET, min_size=8, max_size=8)


def number_from(body: str) -> str:
    return "R" + body + check_character("R" + body)


def sample_numbers(count: int = SAMPLE_SIZE, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [new_rma_number(rng.randrange) for _ in range(count)]


def replace_at(number: str, position: int, symbol: str) -> str:
    return number[:position] + symbol + number[position + 1 :]


def twin_at(text: str, position: int, symbol: str) -> str:
    return text[:position] + symbol * 2 + text[position + 2 :]


def swap(number: str, i: int, j: int) -> str:
    chars = list(number)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def is_rejected(text: str) -> bool:
    return parse_rma_number(text).outcome != "ok"


# Generation -------------------------------------------------------------------------------


def test_generated_numbers_are_valid_canonical_and_use_only_the_alphabet():
    for _ in range(1000):
        number = new_rma_number()

        assert len(number) == LENGTH == 10
        assert number.startswith("R")
        assert set(number) <= set(ALPHABET)
        assert parse_rma_number(number) == RmaParse("ok", number, "valid RMA number")


def test_random_symbols_map_every_byte_value_to_the_alphabet_without_bias(monkeypatch):
    """Each of the 256 byte values once: every symbol comes out exactly 8 times."""
    from collections import Counter

    import rma.numbers

    monkeypatch.setattr(rma.numbers.secrets, "token_bytes", lambda n: bytes(range(256))[:n])
    symbols = rma.numbers.random_symbols(256)
    assert len(symbols) == 256
    assert Counter(symbols) == {symbol: 8 for symbol in ALPHABET}


def test_random_symbols_draw_fresh_symbols_from_the_system_source():
    drawn = [random_symbols(9) for _ in range(200)]
    assert all(len(text) == 9 and set(text) <= set(ALPHABET) for text in drawn)
    assert len(set(drawn)) == 200
    assert set("".join(drawn)) == set(ALPHABET)  # 1,800 draws: each of 32 symbols appears


def test_generation_draws_eight_symbols_from_the_injected_source():
    draws: list[int] = []

    def first_symbol(n: int) -> int:
        draws.append(n)
        return 0

    number = new_rma_number(first_symbol)

    assert draws == [32] * 8
    assert number == "R22222222" + check_character("R22222222")


def test_the_alphabet_has_32_symbols_without_lookalikes():
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert not set(ALPHABET) & set("01OI")


@pytest.mark.parametrize("payload", ["", "R1234", "r7K4M9QX2", "R7K4M9QX 2"])
def test_check_character_refuses_symbols_outside_the_alphabet(payload):
    with pytest.raises(ValueError, match="payload must be symbols"):
        check_character(payload)


# Display and input ------------------------------------------------------------------------


def test_numbers_are_displayed_in_two_halves():
    assert format_rma_number(VALID) == "R7K4M-9QX2V"


@pytest.mark.parametrize(
    "typed",
    [
        "R7K4M-9QX2V",
        "r7k4m-9qx2v",
        "  R7K4M 9QX2V\n",
        "R 7 K 4 M - 9 Q X 2 V",
        "R7K4M\u20139QX2V",
        "R7K4M\u00a09QX2V",
        "\tr7k4m9qx2v ",
    ],
)
def test_typed_numbers_are_normalised_to_the_canonical_form(typed):
    assert normalize_rma_input(typed) == VALID
    assert parse_rma_number(typed) == RmaParse("ok", VALID, "valid RMA number")


@given(bodies)
def test_formatted_numbers_parse_back_to_themselves(body):
    number = number_from(body)

    shown = format_rma_number(number)

    assert normalize_rma_input(shown) == number
    assert parse_rma_number(shown.lower()).number == number


def test_formatting_refuses_what_is_not_an_rma_number():
    with pytest.raises(ValueError, match="not an RMA number"):
        format_rma_number("SN-12345")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "enter an RMA number"),
        ("   - ", "enter an RMA number"),
        ("X7K4M9QX2V", "starts with R"),
        ("7K4M9QX2V", "starts with R"),
        ("4006381333931", "starts with R"),
        ("R7K4M9QX2", "has 10 characters, this has 9"),
        ("R7K4M9QX2VV", "has 10 characters, this has 11"),
        ("R", "has 10 characters, this has 1"),
        ("R7K4M9QX20", "never contain 0, O, 1 or I"),
        ("R7K4M9QXOV", "never contain 0, O, 1 or I"),
        ("R7K4M9Q1XV", "never contain 0, O, 1 or I"),
        ("RIK4M9QX2V", "never contain 0, O, 1 or I"),
        ("R7K4M9QX2\u0131", "never contain 0, O, 1 or I"),
        ("R7K4M9QX2_", "only the digits 2-9 and the letters A-Z"),
        ("R7K4M9QX2\u00c5", "only the digits 2-9 and the letters A-Z"),
        ("R\uff17K4M9QX2V", "only the digits 2-9 and the letters A-Z"),
        ("R7K4M9QX2\U0001f4e6", "only the digits 2-9 and the letters A-Z"),
        ("R7K4M9QX2\x00", "only the digits 2-9 and the letters A-Z"),
        ("R" * 10_000, "far longer"),
        (VALID + " " * 10_000, "far longer"),
    ],
)
def test_malformed_input_is_rejected_with_a_reason(text, reason):
    parsed = parse_rma_number(text)

    assert parsed.outcome == "malformed"
    assert parsed.number is None
    assert reason in parsed.message


@given(st.text())
def test_any_text_parses_to_one_of_three_outcomes_without_raising(text):
    parsed = parse_rma_number(text)

    assert parsed.outcome in {"ok", "malformed", "bad_check_character"}
    assert parsed.message
    if parsed.outcome == "ok":
        assert parsed.number is not None and looks_like_rma(parsed.number)
    else:
        assert parsed.number is None


# Telling an RMA label from a product barcode ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID, True),
        ("r7k4m-9qx2v", True),
        (replace_at(VALID, 9, "W"), True),
        ("4006381333931", False),
        ("SN-2024-000123", False),
        ("R123456789", False),
        ("R7K4M9QX2", False),
        ("", False),
        ("R" * 10_000, False),
    ],
)
def test_looks_like_rma_tests_prefix_length_and_alphabet_only(text, expected):
    assert looks_like_rma(text) is expected


# What the check character detects ---------------------------------------------------------


def test_every_single_substitution_is_detected():
    for number in sample_numbers():
        for position in range(1, LENGTH):
            for symbol in ALPHABET.replace(number[position], ""):
                typo = replace_at(number, position, symbol)
                assert parse_rma_number(typo).outcome == "bad_check_character", typo
        for symbol in ALPHABET.replace("R", ""):
            assert parse_rma_number(symbol + number[1:]).outcome == "malformed"


def test_every_adjacent_transposition_is_detected():
    """Exhaustive: every ordered pair of different symbols at every adjacent position."""
    rng = random.Random(11)
    detected = total = 0
    for position in range(1, LENGTH - 1):
        for a in ALPHABET:
            for b in ALPHABET.replace(a, ""):
                body = [rng.choice(ALPHABET) for _ in range(8)]
                if position + 1 < LENGTH - 1:
                    body[position - 1], body[position] = a, b
                    number = number_from("".join(body))
                else:
                    # The last body symbol against the check character: find a body whose
                    # check character is b, then the pair (a, b) swaps with the check.
                    body[position - 1] = a
                    while (number := number_from("".join(body)))[-1] != b:
                        body[0] = rng.choice(ALPHABET)
                total += 1
                detected += is_rejected(swap(number, position, position + 1))

    assert total == 8 * 32 * 31
    assert Fraction(detected, total) == 1


def test_every_transposition_at_any_distance_is_detected():
    for number in sample_numbers(100):
        for i in range(1, LENGTH):
            for j in range(i + 1, LENGTH):
                if number[i] != number[j]:
                    assert is_rejected(swap(number, i, j))


def test_every_twin_error_is_detected():
    """Exhaustive over the body: a doubled symbol typed as another doubled symbol."""
    for position in range(1, LENGTH - 2):
        for a in ALPHABET:
            number = number_from(twin_at("23456789", position - 1, a))
            for b in ALPHABET.replace(a, ""):
                assert is_rejected(twin_at(number, position, b))


@given(bodies, st.integers(1, LENGTH - 1), st.sampled_from(ALPHABET))
def test_a_substituted_symbol_never_passes(body, position, symbol):
    number = number_from(body)
    typo = replace_at(number, position, symbol)

    assert parse_rma_number(typo).outcome == ("ok" if typo == number else "bad_check_character")


@given(bodies, st.integers(1, LENGTH - 1), st.integers(1, LENGTH - 1))
def test_a_transposition_never_passes(body, i, j):
    number = number_from(body)
    swapped = swap(number, i, j)

    assert (swapped == number) != is_rejected(swapped)


def iso7064_hybrid_32_product(symbols: str) -> int:
    """ISO/IEC 7064 hybrid system MOD 33,32, the construction the RMA check replaced."""
    product = 32
    for symbol in symbols:
        total = (product + ALPHABET.index(symbol)) % 32 or 32
        product = (2 * total) % 33
    return product


def iso7064_hybrid_32_check(payload: str) -> str:
    return ALPHABET[(33 - iso7064_hybrid_32_product(payload)) % 32]


def iso7064_hybrid_32_is_valid(number: str) -> bool:
    return (iso7064_hybrid_32_product(number[:-1]) + ALPHABET.index(number[-1])) % 32 == 1


def test_iso7064_mod_33_32_would_miss_one_adjacent_transposition_in_496():
    """Why the RMA check is over GF(32): the ISO hybrid misses swaps of alphabet neighbours."""
    missed: set[tuple[str, str]] = set()
    misses = total = 0
    for first in ALPHABET:
        for a in ALPHABET:
            for b in ALPHABET.replace(a, ""):
                payload = "R" + first + a + b + "23456"
                number = payload + iso7064_hybrid_32_check(payload)
                total += 1
                if iso7064_hybrid_32_is_valid(swap(number, 2, 3)):
                    misses += 1
                    missed.add((a, b))

    assert Fraction(misses, total) == Fraction(1, 496)
    assert ("4", "5") in missed
    assert all((ALPHABET.index(b) - ALPHABET.index(a)) % 32 in {1, 31} for a, b in missed)
