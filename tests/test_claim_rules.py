"""The warranty decision engine: every rule and reason code, from plain facts to a decision."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claims.rules import (
    APPROVED,
    DOA_REPLACEMENT,
    EMAIL_MISMATCH,
    EXCLUDED_FAULT,
    EXTENDED_WARRANTY,
    NEEDS_REVIEW,
    OUT_OF_WARRANTY,
    PURCHASE_BEFORE_RELEASE,
    PURCHASE_DATE_IN_FUTURE,
    PURCHASE_NOT_MATCHED,
    REFUND_REQUESTED,
    REJECTED,
    REMEDIES,
    REPEAT_CLAIMS,
    SERIAL_IN_OPEN_CLAIM,
    SERIAL_NOT_REGISTERED,
    WITHIN_WARRANTY,
    ClaimFacts,
    Decision,
    ProductTerms,
    PurchaseFacts,
    Reason,
    add_months,
    decide,
    public_code,
)

PURCHASED = date(2024, 1, 15)
WARRANTY_ENDS = date(2026, 1, 15)  # 24 months after PURCHASED

PRODUCT = ProductTerms(
    sku="KETTLE-2",
    warranty_months=24,
    exclusions=frozenset({"water_damage", "cosmetic"}),
    released_on=date(2022, 9, 1),
    doa_days=30,
    review_after_claims=2,
)
PURCHASE = PurchaseFacts(
    serial_number="SN-1001",
    sku="KETTLE-2",
    purchase_date=PURCHASED,
    customer_email="ann@example.com",
)
CLAIM = ClaimFacts(
    serial_number="SN-1001",
    email="ann@example.com",
    fault_category="no_power",
    filed_on=date(2024, 6, 1),
)


def run(
    claim: dict[str, Any] | None = None,
    purchase: dict[str, Any] | None = None,
    product: dict[str, Any] | None = None,
    previous_claims: int = 0,
) -> Decision:
    """``decide`` on the default facts with some fields replaced."""
    return decide(
        replace(CLAIM, **(claim or {})),
        replace(PURCHASE, **(purchase or {})),
        replace(PRODUCT, **(product or {})),
        previous_claims=previous_claims,
    )


def days_after_purchase(days: int) -> date:
    return PURCHASED + timedelta(days=days)


def case(
    id: str,
    *,
    status: str,
    codes: tuple[str, ...],
    remedy: str | None,
    claim: dict[str, Any] | None = None,
    purchase: dict[str, Any] | None = None,
    product: dict[str, Any] | None = None,
    previous_claims: int = 0,
):
    facts = {"claim": claim, "purchase": purchase, "product": product,
             "previous_claims": previous_claims}
    return pytest.param(facts, status, codes, remedy, id=id)


# Matching the purchase --------------------------------------------------------------------


def test_rejects_claim_for_unregistered_serial():
    decision = decide(CLAIM, None, PRODUCT)

    assert decision == Decision(REJECTED, (Reason(SERIAL_NOT_REGISTERED),))
    assert decision.remedy is None
    assert decision.warranty_ends_on is None


@pytest.mark.parametrize(
    ("claim_email", "purchase_email", "matches"),
    [
        pytest.param("ann@example.com", "ann@example.com", True, id="same"),
        pytest.param("ANN@Example.COM", "ann@example.com", True, id="claim-upper-case"),
        pytest.param("ann@example.com", "Ann@EXAMPLE.com", True, id="purchase-mixed-case"),
        pytest.param("  ann@example.com ", "ann@example.com", True, id="surrounding-spaces"),
        pytest.param("bob@example.com", "ann@example.com", False, id="other-person"),
        pytest.param("ann@example.org", "ann@example.com", False, id="other-domain"),
        pytest.param("ann+x@example.com", "ann@example.com", False, id="plus-address"),
    ],
)
def test_email_is_compared_case_insensitively(claim_email, purchase_email, matches):
    decision = run(claim={"email": claim_email}, purchase={"customer_email": purchase_email})

    if matches:
        assert decision.status == APPROVED
    else:
        assert decision == Decision(REJECTED, (Reason(EMAIL_MISMATCH),))


def test_email_mismatch_reveals_nothing_else_about_the_purchase():
    decision = run(
        claim={"email": "mallory@example.com", "fault_category": "water_damage",
               "filed_on": date(2030, 1, 1)},
        previous_claims=9,
    )

    assert decision.codes == (EMAIL_MISMATCH,)
    assert decision.reasons[0].params == {}
    assert decision.warranty_ends_on is None
    assert decision.remedy is None


# The decision table -----------------------------------------------------------------------

DECISIONS = [
    # Warranty period: the filing date itself counts.
    case("filed-mid-warranty", status=APPROVED, codes=(WITHIN_WARRANTY,), remedy="repair"),
    case("filed-on-purchase-day", status=APPROVED, codes=(WITHIN_WARRANTY,), remedy="repair",
         claim={"filed_on": PURCHASED}),
    case("filed-on-last-day-of-warranty", status=APPROVED, codes=(WITHIN_WARRANTY,),
         remedy="repair", claim={"filed_on": WARRANTY_ENDS}),
    case("filed-day-after-warranty", status=REJECTED, codes=(OUT_OF_WARRANTY,), remedy=None,
         claim={"filed_on": WARRANTY_ENDS + timedelta(days=1)}),
    case("filed-years-after-warranty", status=REJECTED, codes=(OUT_OF_WARRANTY,), remedy=None,
         claim={"filed_on": date(2031, 1, 1)}),
    # Extended warranty: 24 + 12 months.
    case("extended-first-day", status=APPROVED, codes=(EXTENDED_WARRANTY,), remedy="repair",
         claim={"filed_on": WARRANTY_ENDS + timedelta(days=1)},
         product={"extended_warranty_months": 12}),
    case("extended-last-day", status=APPROVED, codes=(EXTENDED_WARRANTY,), remedy="repair",
         claim={"filed_on": date(2027, 1, 15)}, product={"extended_warranty_months": 12}),
    case("extended-day-after", status=REJECTED, codes=(OUT_OF_WARRANTY,), remedy=None,
         claim={"filed_on": date(2027, 1, 16)}, product={"extended_warranty_months": 12}),
    case("extended-but-still-in-base", status=APPROVED, codes=(WITHIN_WARRANTY,),
         remedy="repair", claim={"filed_on": WARRANTY_ENDS},
         product={"extended_warranty_months": 12}),
    # Month-end clamping: Jan 31 + 1 month is the last day of February.
    case("jan-31-plus-1-month-common-year-last-day", status=APPROVED, codes=(WITHIN_WARRANTY,),
         remedy="repair", purchase={"purchase_date": date(2023, 1, 31)},
         claim={"filed_on": date(2023, 2, 28)}, product={"warranty_months": 1}),
    case("jan-31-plus-1-month-common-year-day-after", status=REJECTED,
         codes=(OUT_OF_WARRANTY,), remedy=None, purchase={"purchase_date": date(2023, 1, 31)},
         claim={"filed_on": date(2023, 3, 1)}, product={"warranty_months": 1}),
    case("jan-31-plus-1-month-leap-year-feb-29", status=APPROVED, codes=(WITHIN_WARRANTY,),
         remedy="repair", purchase={"purchase_date": date(2024, 1, 31)},
         claim={"filed_on": date(2024, 2, 29)}, product={"warranty_months": 1}),
    case("jan-31-plus-1-month-leap-year-mar-1", status=REJECTED, codes=(OUT_OF_WARRANTY,),
         remedy=None, purchase={"purchase_date": date(2024, 1, 31)},
         claim={"filed_on": date(2024, 3, 1)}, product={"warranty_months": 1}),
    case("leap-day-purchase-plus-12-months-ends-feb-28", status=REJECTED,
         codes=(OUT_OF_WARRANTY,), remedy=None, purchase={"purchase_date": date(2024, 2, 29)},
         claim={"filed_on": date(2025, 3, 1)}, product={"warranty_months": 12}),
    # Excluded faults.
    case("excluded-fault", status=REJECTED, codes=(EXCLUDED_FAULT,), remedy=None,
         claim={"fault_category": "water_damage"}),
    case("fault-excluded-for-other-products-only", status=APPROVED, codes=(WITHIN_WARRANTY,),
         remedy="repair", claim={"fault_category": "water_damage"},
         product={"exclusions": frozenset({"battery"})}),
    case("out-of-warranty-and-excluded-fault", status=REJECTED,
         codes=(OUT_OF_WARRANTY, EXCLUDED_FAULT), remedy=None,
         claim={"fault_category": "cosmetic", "filed_on": date(2027, 1, 1)}),
    # Implausible purchase facts go to a person.
    case("purchase-date-in-future", status=NEEDS_REVIEW,
         codes=(PURCHASE_DATE_IN_FUTURE, WITHIN_WARRANTY), remedy="repair",
         claim={"filed_on": PURCHASED - timedelta(days=1)}),
    case("purchased-on-filing-day-is-not-future", status=APPROVED, codes=(WITHIN_WARRANTY,),
         remedy="repair", claim={"filed_on": PURCHASED}),
    case("purchase-before-release", status=NEEDS_REVIEW,
         codes=(PURCHASE_BEFORE_RELEASE, WITHIN_WARRANTY), remedy="repair",
         product={"released_on": PURCHASED + timedelta(days=1)}),
    case("purchase-on-release-day", status=APPROVED, codes=(WITHIN_WARRANTY,), remedy="repair",
         product={"released_on": PURCHASED}),
    case("release-date-unknown", status=APPROVED, codes=(WITHIN_WARRANTY,), remedy="repair",
         product={"released_on": None}),
    # Repeat claims: the threshold is per product.
    case("previous-claims-below-threshold", status=APPROVED, codes=(WITHIN_WARRANTY,),
         remedy="repair", previous_claims=1),
    case("previous-claims-at-threshold", status=NEEDS_REVIEW,
         codes=(REPEAT_CLAIMS, WITHIN_WARRANTY), remedy="repair", previous_claims=2),
    case("previous-claims-above-threshold", status=NEEDS_REVIEW,
         codes=(REPEAT_CLAIMS, WITHIN_WARRANTY), remedy="repair", previous_claims=7),
    case("higher-product-threshold-not-reached", status=APPROVED, codes=(WITHIN_WARRANTY,),
         remedy="repair", product={"review_after_claims": 5}, previous_claims=4),
    case("higher-product-threshold-reached", status=NEEDS_REVIEW,
         codes=(REPEAT_CLAIMS, WITHIN_WARRANTY), remedy="repair",
         product={"review_after_claims": 5}, previous_claims=5),
    case("zero-threshold-reviews-first-claim", status=NEEDS_REVIEW,
         codes=(REPEAT_CLAIMS, WITHIN_WARRANTY), remedy="repair",
         product={"review_after_claims": 0}),
    # Remedies.
    case("no-remedy-requested-defaults-to-repair", status=APPROVED, codes=(WITHIN_WARRANTY,),
         remedy="repair", claim={"requested_remedy": None}),
    case("requested-repair-kept", status=APPROVED, codes=(WITHIN_WARRANTY,), remedy="repair",
         claim={"requested_remedy": "repair"}),
    case("requested-replace-kept", status=APPROVED, codes=(WITHIN_WARRANTY,), remedy="replace",
         claim={"requested_remedy": "replace"}),
    case("refund-requested", status=NEEDS_REVIEW, codes=(REFUND_REQUESTED, WITHIN_WARRANTY),
         remedy="refund", claim={"requested_remedy": "refund"}),
    # Dead on arrival (Plan B): replaced inside the window whatever was asked for.
    case("doa-on-purchase-day", status=APPROVED, codes=(WITHIN_WARRANTY, DOA_REPLACEMENT),
         remedy="replace", claim={"dead_on_arrival": True, "filed_on": PURCHASED}),
    case("doa-last-day-of-window", status=APPROVED, codes=(WITHIN_WARRANTY, DOA_REPLACEMENT),
         remedy="replace", claim={"dead_on_arrival": True, "filed_on": days_after_purchase(30)}),
    case("doa-day-after-window-keeps-default-repair", status=APPROVED, codes=(WITHIN_WARRANTY,),
         remedy="repair", claim={"dead_on_arrival": True, "filed_on": days_after_purchase(31)}),
    case("doa-asked-for-repair-gets-replace", status=APPROVED,
         codes=(WITHIN_WARRANTY, DOA_REPLACEMENT), remedy="replace",
         claim={"dead_on_arrival": True, "filed_on": days_after_purchase(3),
                "requested_remedy": "repair"}),
    case("doa-asked-for-refund-gets-replace-without-review", status=APPROVED,
         codes=(WITHIN_WARRANTY, DOA_REPLACEMENT), remedy="replace",
         claim={"dead_on_arrival": True, "filed_on": days_after_purchase(3),
                "requested_remedy": "refund"}),
    case("doa-outside-window-keeps-requested-refund", status=NEEDS_REVIEW,
         codes=(REFUND_REQUESTED, WITHIN_WARRANTY), remedy="refund",
         claim={"dead_on_arrival": True, "filed_on": days_after_purchase(31),
                "requested_remedy": "refund"}),
    case("doa-outside-window-keeps-requested-replace", status=APPROVED, codes=(WITHIN_WARRANTY,),
         remedy="replace", claim={"dead_on_arrival": True, "filed_on": days_after_purchase(45),
                                  "requested_remedy": "replace"}),
    case("doa-product-window-14-days-inside", status=APPROVED,
         codes=(WITHIN_WARRANTY, DOA_REPLACEMENT), remedy="replace",
         claim={"dead_on_arrival": True, "filed_on": days_after_purchase(14)},
         product={"doa_days": 14}),
    case("doa-product-window-14-days-outside", status=APPROVED, codes=(WITHIN_WARRANTY,),
         remedy="repair", claim={"dead_on_arrival": True, "filed_on": days_after_purchase(15)},
         product={"doa_days": 14}),
    case("doa-with-purchase-date-in-future-is-not-replaced", status=NEEDS_REVIEW,
         codes=(PURCHASE_DATE_IN_FUTURE, WITHIN_WARRANTY), remedy="repair",
         claim={"dead_on_arrival": True, "filed_on": PURCHASED - timedelta(days=1)}),
    case("not-doa-inside-window-keeps-repair", status=APPROVED, codes=(WITHIN_WARRANTY,),
         remedy="repair", claim={"filed_on": days_after_purchase(2)}),
    # Several reasons at once; rejecting beats reviewing.
    case("all-reviewing-reasons-reported-together", status=NEEDS_REVIEW,
         codes=(PURCHASE_DATE_IN_FUTURE, PURCHASE_BEFORE_RELEASE, REPEAT_CLAIMS,
                REFUND_REQUESTED, WITHIN_WARRANTY),
         remedy="refund",
         claim={"filed_on": PURCHASED - timedelta(days=1), "requested_remedy": "refund"},
         product={"released_on": PURCHASED + timedelta(days=1)}, previous_claims=3),
    case("out-of-warranty-beats-repeat-claims", status=REJECTED, codes=(OUT_OF_WARRANTY,),
         remedy=None, claim={"filed_on": date(2027, 1, 1)}, previous_claims=5),
    case("excluded-fault-beats-refund-and-release", status=REJECTED, codes=(EXCLUDED_FAULT,),
         remedy=None, claim={"fault_category": "cosmetic", "requested_remedy": "refund"},
         product={"released_on": PURCHASED + timedelta(days=1)}),
    case("excluded-fault-beats-doa-replacement", status=REJECTED, codes=(EXCLUDED_FAULT,),
         remedy=None, claim={"fault_category": "water_damage", "dead_on_arrival": True,
                             "filed_on": days_after_purchase(1)}),
]


@pytest.mark.parametrize(("facts", "status", "codes", "remedy"), DECISIONS)
def test_decides_status_reasons_and_remedy(facts, status, codes, remedy):
    decision = run(**facts)

    assert (decision.status, decision.codes, decision.remedy) == (status, codes, remedy)


# Reason parameters and warranty end -------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "ends_on"),
    [
        pytest.param({}, WARRANTY_ENDS, id="base-24-months"),
        pytest.param({"product": {"extended_warranty_months": 12}}, date(2027, 1, 15),
                     id="extended-12-months"),
        pytest.param({"product": {"warranty_months": 1},
                      "purchase": {"purchase_date": date(2024, 1, 31)},
                      "claim": {"filed_on": date(2024, 2, 1)}},
                     date(2024, 2, 29), id="clamped-to-leap-day"),
        pytest.param({"claim": {"filed_on": date(2030, 1, 1)}}, WARRANTY_ENDS,
                     id="also-on-rejection"),
        pytest.param({"previous_claims": 4}, WARRANTY_ENDS, id="also-on-review"),
    ],
)
def test_reports_when_the_warranty_ends(facts, ends_on):
    assert run(**facts).warranty_ends_on == ends_on


def test_reasons_carry_the_dates_and_values_they_refer_to():
    out = run(claim={"filed_on": date(2027, 1, 1), "fault_category": "cosmetic"})
    assert [r.as_dict() for r in out.reasons] == [
        {"code": OUT_OF_WARRANTY, "params": {"ended_on": "2026-01-15"}},
        {"code": EXCLUDED_FAULT, "params": {"fault_category": "cosmetic"}},
    ]

    review = run(
        claim={"filed_on": date(2024, 1, 1)},
        product={"released_on": date(2024, 2, 1), "extended_warranty_months": 6},
        previous_claims=3,
    )
    assert [r.as_dict() for r in review.reasons] == [
        {"code": PURCHASE_DATE_IN_FUTURE, "params": {"purchase_date": "2024-01-15"}},
        {"code": PURCHASE_BEFORE_RELEASE, "params": {"released_on": "2024-02-01"}},
        {"code": REPEAT_CLAIMS, "params": {"previous_claims": 3}},
        {"code": WITHIN_WARRANTY, "params": {"ends_on": "2026-07-15"}},
    ]

    extended = run(claim={"filed_on": date(2026, 3, 1)}, product={"extended_warranty_months": 6})
    assert extended.reasons[0].as_dict() == {
        "code": EXTENDED_WARRANTY, "params": {"ends_on": "2026-07-15"},
    }

    doa = run(claim={"dead_on_arrival": True, "filed_on": PURCHASED}, product={"doa_days": 14})
    assert doa.reasons[-1].as_dict() == {"code": DOA_REPLACEMENT, "params": {"doa_days": 14}}


def test_extended_warranty_is_counted_from_the_purchase_date_not_a_clamped_base_end():
    decision = run(
        purchase={"purchase_date": date(2023, 8, 31)},
        claim={"filed_on": date(2024, 8, 30)},
        product={"warranty_months": 6, "extended_warranty_months": 6},
    )

    assert decision.warranty_ends_on == date(2024, 8, 31)
    assert decision.codes == (EXTENDED_WARRANTY,)


# Public reason codes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "public"),
    [
        pytest.param(SERIAL_NOT_REGISTERED, PURCHASE_NOT_MATCHED, id="serial-not-registered"),
        pytest.param(EMAIL_MISMATCH, PURCHASE_NOT_MATCHED, id="email-mismatch"),
        *[
            pytest.param(code, code, id=code)
            for code in (
                OUT_OF_WARRANTY, EXCLUDED_FAULT, PURCHASE_DATE_IN_FUTURE,
                PURCHASE_BEFORE_RELEASE, REPEAT_CLAIMS, REFUND_REQUESTED,
                SERIAL_IN_OPEN_CLAIM, WITHIN_WARRANTY, EXTENDED_WARRANTY, DOA_REPLACEMENT,
            )
        ],
    ],
)
def test_public_code_merges_purchase_lookups_and_keeps_the_rest(code, public):
    assert public_code(code) == public


def test_customer_cannot_tell_unknown_serial_from_someone_elses_email():
    unknown = decide(CLAIM, None, PRODUCT)
    mismatch = run(claim={"email": "mallory@example.com"})

    assert [public_code(c) for c in unknown.codes] == [public_code(c) for c in mismatch.codes]


# add_months -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        pytest.param(date(2024, 1, 15), 0, date(2024, 1, 15), id="zero"),
        pytest.param(date(2024, 1, 15), 24, date(2026, 1, 15), id="two-years"),
        pytest.param(date(2023, 12, 15), 1, date(2024, 1, 15), id="over-new-year"),
        pytest.param(date(2023, 1, 31), 1, date(2023, 2, 28), id="jan-31-common-year"),
        pytest.param(date(2024, 1, 31), 1, date(2024, 2, 29), id="jan-31-leap-year"),
        pytest.param(date(2024, 5, 31), 1, date(2024, 6, 30), id="may-31-to-june-30"),
        pytest.param(date(2024, 2, 29), 12, date(2025, 2, 28), id="leap-day-plus-year"),
        pytest.param(date(2024, 2, 29), 48, date(2028, 2, 29), id="leap-day-plus-four-years"),
        pytest.param(date(2024, 1, 31), 25, date(2026, 2, 28), id="jan-31-plus-25"),
        pytest.param(date(2024, 3, 31), -1, date(2024, 2, 29), id="negative-clamped"),
        pytest.param(date(2024, 1, 15), -1, date(2023, 12, 15), id="negative-over-new-year"),
    ],
)
def test_add_months_clamps_to_the_last_day_of_the_month(start, months, expected):
    assert add_months(start, months) == expected


dates = st.dates(min_value=date(1950, 1, 1), max_value=date(2150, 12, 31))


@given(dates)
def test_adding_zero_months_is_identity(start):
    assert add_months(start, 0) == start


@given(dates, st.integers(-600, 600), st.integers(-600, 600))
def test_add_months_is_monotonic_in_months(start, a, b):
    fewer, more = sorted((a, b))

    assert add_months(start, fewer) <= add_months(start, more)


@given(dates, st.integers(1, 600))
def test_add_months_never_overshoots_the_target_month(start, months):
    end = add_months(start, months)

    assert (end.year - start.year) * 12 + end.month - start.month == months
    assert end.day <= start.day


# Properties of every decision -------------------------------------------------------------

products = st.builds(
    ProductTerms,
    sku=st.just("KETTLE-2"),
    warranty_months=st.integers(0, 60),
    extended_warranty_months=st.integers(0, 36),
    exclusions=st.frozensets(st.sampled_from(["water_damage", "cosmetic", "no_power"])),
    released_on=st.none() | dates,
    doa_days=st.integers(0, 60),
    review_after_claims=st.integers(0, 5),
)
purchases = st.none() | st.builds(
    PurchaseFacts,
    serial_number=st.just("SN-1001"),
    sku=st.just("KETTLE-2"),
    purchase_date=dates,
    customer_email=st.sampled_from(["ann@example.com", "ANN@example.com", "bob@example.com"]),
)
claims = st.builds(
    ClaimFacts,
    serial_number=st.just("SN-1001"),
    email=st.sampled_from(["ann@example.com", "Ann@Example.com", "bob@example.com"]),
    fault_category=st.sampled_from(["water_damage", "cosmetic", "no_power", "noise"]),
    filed_on=dates,
    dead_on_arrival=st.booleans(),
    requested_remedy=st.none() | st.sampled_from(REMEDIES),
)


@given(claims, purchases, products, st.integers(0, 10))
def test_every_decision_is_consistent(claim, purchase, product, previous_claims):
    decision = decide(claim, purchase, product, previous_claims=previous_claims)

    assert decision.status in (APPROVED, NEEDS_REVIEW, REJECTED)
    assert decision.reasons
    if decision.status == REJECTED:
        assert decision.remedy is None
    else:
        assert decision.remedy in REMEDIES
        assert decision.warranty_ends_on is not None
        assert claim.filed_on <= decision.warranty_ends_on
    if decision.status == APPROVED:
        assert decision.remedy != "refund"
