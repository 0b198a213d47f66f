"""Mag7 position sizing (pure): a confidence-scaled risk budget, capped, haircut for correlation.

    base   = equity * 2% * (0.5 + confidence)
    budget = min(base,
                 max_position_size,                               (account limit)
                 10% * equity - max loss already open in the stock (both systems),
                 30% * equity - Mag7 max loss already open in the sector)
    budget *= 0.5 if mean |corr| > 0.8, 0.75 if > 0.6            (60-day daily returns vs held
                                                                   Mag7 underlyings)
    contracts = floor(budget / max loss of one contract); 0 -> no trade

At most 3 Mag7 positions may be open. Exposure is measured as the positions' max loss (dollars).
The decision names the cap that bound the budget, so a skipped or small trade says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

from core.models import Position, PositionStatus, SystemName
from systems.mag7.config import Sector, SizingConfig

CENTS = Decimal("0.01")


class SizingCap(StrEnum):
    RISK_BUDGET = "risk_budget"  # equity x risk_fraction x (offset + confidence)
    MAX_POSITION_SIZE = "max_position_size"  # the account limit
    STOCK = "stock_cap"  # stock_cap_fraction of equity per stock
    SECTOR = "sector_cap"  # sector_cap_fraction of equity per sector
    POSITIONS = "max_open_positions"  # Mag7 positions open


@dataclass(frozen=True, slots=True)
class SizingDecision:
    quantity: int
    budget: Decimal  # after caps and the correlation factor
    base_budget: Decimal
    bound_by: SizingCap
    corr_factor: Decimal
    mean_abs_corr: float | None
    reasons: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.quantity > 0

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def _open(positions: Sequence[Position]) -> list[Position]:
    return [p for p in positions if p.status is PositionStatus.OPEN]


def stock_exposure(symbol: str, positions: Sequence[Position]) -> Decimal:
    """Max loss open in ``symbol`` across both systems."""
    return sum((p.max_loss for p in _open(positions) if p.underlying == symbol), Decimal("0"))


def sector_exposure(
    sector: Sector, positions: Sequence[Position], sectors: Mapping[str, Sector]
) -> Decimal:
    """Max loss of open Mag7 positions whose underlying is in ``sector``."""
    return sum(
        (
            p.max_loss
            for p in _open(positions)
            if p.system is SystemName.MAG7 and sectors.get(p.underlying) is sector
        ),
        Decimal("0"),
    )


def mean_abs_correlation(correlations: Mapping[str, float], missing: float) -> float | None:
    """Mean |corr| over held underlyings; a NaN (no history) counts as ``missing``."""
    if not correlations:
        return None
    values = [abs(c) if math.isfinite(c) else missing for c in correlations.values()]
    return sum(values) / len(values)


def correlation_factor(mean_abs_corr: float | None, cfg: SizingConfig) -> Decimal:
    """x0.5 above corr_high (0.8), x0.75 above corr_mid (0.6), both strict; else 1."""
    if mean_abs_corr is None:
        return Decimal("1")
    if mean_abs_corr > cfg.corr_high:
        return cfg.corr_high_factor
    if mean_abs_corr > cfg.corr_mid:
        return cfg.corr_mid_factor
    return Decimal("1")


def _confidence(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def size_position(
    symbol: str,
    confidence: float,
    max_loss_per_contract: Decimal,
    equity: Decimal,
    positions: Sequence[Position],
    correlations: Mapping[str, float],
    max_position_size: Decimal,
    sectors: Mapping[str, Sector],
    cfg: SizingConfig,
) -> SizingDecision:
    """Contracts for one Mag7 entry; ``positions`` are the open positions of both systems and
    ``correlations`` maps each held Mag7 underlying to its return correlation with ``symbol``."""
    if max_loss_per_contract <= 0:
        raise ValueError(f"max loss per contract must be positive, got {max_loss_per_contract}")
    base = (
        equity * cfg.risk_fraction * (cfg.confidence_offset + _confidence(confidence))
    ).quantize(CENTS)
    held = [p for p in _open(positions) if p.system is SystemName.MAG7]
    if len(held) >= cfg.max_open_positions:
        return SizingDecision(
            0,
            Decimal("0"),
            base,
            SizingCap.POSITIONS,
            Decimal("1"),
            None,
            (f"{len(held)} Mag7 positions open (max {cfg.max_open_positions})",),
        )
    sector = sectors.get(symbol)
    caps: list[tuple[SizingCap, Decimal, str]] = [
        (
            SizingCap.RISK_BUDGET,
            base,
            f"{cfg.risk_fraction:%} of equity x ({cfg.confidence_offset} + confidence "
            f"{confidence:.4f}) = {base}",
        ),
        (SizingCap.MAX_POSITION_SIZE, max_position_size, f"max_position_size {max_position_size}"),
    ]
    in_stock = stock_exposure(symbol, positions)
    stock_room = equity * cfg.stock_cap_fraction - in_stock
    caps.append(
        (
            SizingCap.STOCK,
            stock_room,
            f"stock cap {cfg.stock_cap_fraction:.0%} of equity less {in_stock} open in {symbol}",
        )
    )
    if sector is not None:
        in_sector = sector_exposure(sector, positions, sectors)
        sector_room = equity * cfg.sector_cap_fraction - in_sector
        caps.append(
            (
                SizingCap.SECTOR,
                sector_room,
                f"sector cap {cfg.sector_cap_fraction:.0%} of equity less {in_sector} open in "
                f"{sector.value}",
            )
        )
    bound, capped, text = caps[0]
    for cap, value, label in caps[1:]:
        if value < capped:
            bound, capped, text = cap, value, label
    capped = max(capped, Decimal("0")).quantize(CENTS)
    reasons = [f"budget {capped} bound by {bound.value} ({text})"]
    mean_corr = mean_abs_correlation(correlations, cfg.missing_correlation)
    factor = correlation_factor(mean_corr, cfg)
    budget = (capped * factor).quantize(CENTS)
    if mean_corr is not None:
        reasons.append(
            f"mean |corr| {mean_corr:.3f} with held {', '.join(sorted(correlations))}: x{factor}"
        )
    qty = int((budget / max_loss_per_contract).to_integral_value(rounding=ROUND_FLOOR))
    if qty == 0:
        reasons.append(
            f"no trade: budget {budget} below one contract's max loss {max_loss_per_contract} "
            f"(bound by {bound.value})"
        )
    return SizingDecision(qty, budget, base, bound, factor, mean_corr, tuple(reasons))
