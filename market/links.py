"""Cross-venue links (market/data/links.toml): leg pairs of one commodity and the costs between them."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources

from market.instruments import Registry, default_registry

_FIELDS = {"id", "leg_a", "leg_b", "duty_pct", "freight", "basis", "fees_bps"}


@dataclass(frozen=True, slots=True)
class Link:
    id: str
    leg_a: str
    leg_b: str
    duty_pct: Decimal
    freight: Decimal  # canonical currency per canonical unit
    basis: Decimal  # canonical currency per canonical unit
    fees_bps: Decimal  # per leg

    def fair_b(self, a_canonical: float) -> float:
        """Fair canonical price of leg b given leg a's canonical price."""
        return a_canonical * (1.0 + float(self.duty_pct) / 100.0) + float(self.freight) + float(self.basis)

    def a_from_b(self, b_canonical: float) -> float:
        return (b_canonical - float(self.freight) - float(self.basis)) / (1.0 + float(self.duty_pct) / 100.0)


def load_links(text: str | None = None, registry: Registry | None = None) -> tuple[Link, ...]:
    reg = registry or default_registry()
    if text is None:
        text = resources.files("market").joinpath("data/links.toml").read_text()
    out = []
    for n, row in enumerate(tomllib.loads(text).get("link", [])):
        if set(row) != _FIELDS:
            raise ValueError(f"link #{n}: unknown {sorted(set(row) - _FIELDS)}, missing {sorted(_FIELDS - set(row))}")
        a, b = reg.get(row["leg_a"]), reg.get(row["leg_b"])
        if a.commodity != b.commodity:
            raise ValueError(f"link {row['id']}: legs trade different commodities")
        out.append(Link(row["id"], a.id, b.id, Decimal(row["duty_pct"]), Decimal(row["freight"]),
                        Decimal(row["basis"]), Decimal(row["fees_bps"])))
    return tuple(out)


@cache
def default_links() -> tuple[Link, ...]:
    return load_links()
