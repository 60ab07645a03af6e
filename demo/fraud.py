"""The fraud demo: a synthetic world of service partners and repair claims with known fraud.

Loaded through the real CSV imports (catalog, partners, purchases, repair history), so what the
fraud pages show afterwards is what an imported claim history would give. The products use SKUs
of their own (``NV-...``), so the regular demo data set is left as it is.
"""

from __future__ import annotations

from fraud.synthetic import generate_world, load_world


def load_fraud_demo(seed: int = 7, *, strength: str = "blatant", partners: int = 50,
                    months: int = 24) -> dict:
    """Load a synthetic world (inside an app context) and return what was loaded."""
    world = generate_world(seed, strength=strength, partners=partners, months=months)
    load_world(world, through_import=True)
    fraud = world.partners_of_kind("fraud")
    return {
        "seed": seed,
        "strength": strength,
        "months": f"{world.months[0]}..{world.months[-1]}",
        "products": len(world.products),
        "partners": len(world.partners),
        "purchases": len(world.purchases),
        "claims": len(world.claims),
        "fraud_partners": len(fraud),
        "unusual_partners": len(world.partners_of_kind("unusual")),
        "rule_violations": len(world.rule_truth),
        # Who the scoring should find, for the presenter (never shown to partners).
        "fraud": {code: world.truth[code].note for code in sorted(fraud)},
    }
