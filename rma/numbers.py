"""RMA numbers: short, unambiguous to read aloud and type, guarded by a check character.

Canonical form: ``R`` + 8 random symbols + 1 check character, e.g. ``R7K4M9QX2V``, shown to
people as ``R7K4M-9QX2V``. The 32-symbol alphabet leaves out 0/O and 1/I, so every symbol
reads back one way. The body carries 40 random bits; uniqueness is the database's job.

The check character is the one from ISO/IEC 7064 in spirit and GF(2^5) in arithmetic. The
obvious choice, the ISO/IEC 7064 hybrid system generalised to M=32 (MOD 33,32), detects
every single substitution but, like every hybrid system (MOD 11,10 misses 1 in 45),
misses some adjacent transpositions: exactly 1 in 496 (99.80 % detected), all of them swaps
of alphabet neighbours such as ``45`` -> ``54``, the kind people make. ISO/IEC 7064's pure
systems (a weighted sum modulo a prime) catch them all, but need a prime modulus >= 33,
i.e. more check values than there are symbols. A weighted sum over the field GF(32) has
both: 32 check values and a field. It is a Damm-style check (totally anti-symmetric
quasigroup x * y = alpha*x + y) and detects 100 % of single substitutions, of
transpositions at any distance within the number, and of twin errors (``AA`` -> ``BB``);
``tests/test_rma_numbers.py`` measures all of these exhaustively, the MOD 33,32 figure
included.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
assert len(ALPHABET) == 32  # random_symbols relies on it
PREFIX = "R"
BODY_LENGTH = 8
LENGTH = len(PREFIX) + BODY_LENGTH + 1
# Far longer than anything a person types or a scanner reads; rejects a pasted page cheaply.
MAX_INPUT_LENGTH = 64
# People paste numbers from PDFs and mail clients that turn "-" into typographic dashes.
_SEPARATORS = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212")
_VALUE = {symbol: value for value, symbol in enumerate(ALPHABET)}
_LOOKALIKES = frozenset("0O1I")
# x^5 + x^2 + 1 is primitive, so alpha = x has order 31 and the weights alpha^0..alpha^30
# are all different: that is what makes transpositions at any distance < 31 detectable.
_GF32_POLYNOMIAL = 0b100101

RmaOutcome = Literal["ok", "malformed", "bad_check_character"]


@dataclass(frozen=True)
class RmaParse:
    """What a typed or scanned RMA number turned out to be, with a message for people."""

    outcome: RmaOutcome
    number: str | None
    message: str

    @property
    def ok(self) -> bool:
        """True when the input is a valid RMA number."""
        return self.outcome == "ok"


def _times_alpha(value: int) -> int:
    value <<= 1
    if value & 0b100000:
        value ^= _GF32_POLYNOMIAL
    return value


def _syndrome(symbols: str) -> int:
    # Horner's rule over GF(32): s = a_0*alpha^(n-1) + ... + a_(n-1), where + is XOR.
    # A single substitution adds e*alpha^k != 0; swapping a and b at distance d adds
    # (a+b)*alpha^k*(1+alpha^d), which is non-zero for a != b and 0 < d < 31.
    syndrome = 0
    for symbol in symbols:
        syndrome = _times_alpha(syndrome) ^ _VALUE[symbol]
    return syndrome


def check_character(payload: str) -> str:
    """The check character for ``payload`` (``"R"`` + body), so the whole number sums to 0."""
    if not payload or any(symbol not in _VALUE for symbol in payload):
        raise ValueError(f"payload must be symbols from {ALPHABET}")
    # Appending c gives alpha*s + c; in characteristic 2 that is 0 exactly when c = alpha*s.
    return ALPHABET[_times_alpha(_syndrome(payload))]


def random_symbols(count: int) -> str:
    """``count`` symbols of the alphabet from the OS's CSPRNG, uniformly, in one draw.

    The alphabet has 32 symbols, so the low five bits of a random byte pick one without bias
    (one ``token_bytes`` read instead of a ``randbelow`` call per symbol).
    """
    return "".join([ALPHABET[byte & 31] for byte in secrets.token_bytes(count)])


def new_rma_number(randbelow: Callable[[int], int] | None = None) -> str:
    """A fresh random RMA number in canonical form; callers retry on a unique-key clash.

    ``randbelow``: a seeded generator's, for reproducible numbers in tests and benchmarks.
    """
    if randbelow is None:
        body = random_symbols(BODY_LENGTH)
    else:
        body = "".join(ALPHABET[randbelow(len(ALPHABET))] for _ in range(BODY_LENGTH))
    payload = PREFIX + body
    return payload + check_character(payload)


def normalize_rma_input(text: str) -> str:
    """Typed or pasted input without whitespace and hyphens, upper-cased."""
    return "".join(ch for ch in "".join(text.split()) if ch not in _SEPARATORS).upper()


def looks_like_rma(text: str) -> bool:
    """True when ``text`` has the prefix, length and alphabet of an RMA number.

    The check character is not tested: a mistyped RMA number should still be treated as
    an RMA number (and told it has a bad check character), not looked up as a product.
    """
    if len(text) > MAX_INPUT_LENGTH:
        return False
    number = normalize_rma_input(text)
    return (
        len(number) == LENGTH
        and number.startswith(PREFIX)
        and all(symbol in _VALUE for symbol in number)
    )


def parse_rma_number(text: str) -> RmaParse:
    """Parse typed or scanned input into a canonical RMA number, or say what is wrong."""
    if len(text) > MAX_INPUT_LENGTH:
        return _malformed(f"an RMA number has {LENGTH} characters; this is far longer")
    number = normalize_rma_input(text)
    if not number:
        return _malformed("enter an RMA number")
    if not number.startswith(PREFIX):
        return _malformed(f"an RMA number starts with {PREFIX}")
    if any(symbol in _LOOKALIKES for symbol in number):
        return _malformed("RMA numbers never contain 0, O, 1 or I")
    if any(symbol not in _VALUE for symbol in number):
        return _malformed("RMA numbers contain only the digits 2-9 and the letters A-Z")
    if len(number) != LENGTH:
        return _malformed(f"an RMA number has {LENGTH} characters, this has {len(number)}")
    if _syndrome(number) != 0:
        return RmaParse(
            "bad_check_character",
            None,
            "this RMA number does not add up: a character is mistyped or two are swapped",
        )
    return RmaParse("ok", number, "valid RMA number")


def format_rma_number(number: str) -> str:
    """An RMA number for display, split in two halves of five: ``R7K4M-9QX2V``."""
    if not looks_like_rma(number):
        raise ValueError("not an RMA number")
    canonical = normalize_rma_input(number)
    half = LENGTH // 2
    return f"{canonical[:half]}-{canonical[half:]}"


def _malformed(message: str) -> RmaParse:
    return RmaParse("malformed", None, message)
