"""The fixed list of fault categories customers choose from and products can exclude."""

FAULT_CATEGORIES: tuple[str, ...] = (
    "no_power",
    "display",
    "audio",
    "battery",
    "charging",
    "connectivity",
    "software",
    "mechanical",
    "overheating",
    "cosmetic",
    "physical_damage",
    "water_damage",
    "other",
)
