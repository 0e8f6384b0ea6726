"""Cost tiers: where each model stands in the seed's matrices, for a request that asks to be
served cheaply (`Request.cost`).

A request's cost tier may move it only to models that are up to the job, so each model gets a
grade from the config's matrices, once:

- its **complexity** grade is the hardest `[routing.complexity]` row that lists it, and its
  **quality** grade the highest `[routing.quality]` row; a model no row lists grades lowest
  (trivial, draft). A model *fits* a request when both grades are at least the request's: a
  critical request never fits a model listed only for drafts.
- its **cost tier** is the cheapest `[routing.cost]` row that lists it; a model no row lists takes
  the first tier whose dearest listed model costs at least as much (input plus output price per
  million tokens), and the top tier when it costs more than all of them. A model with no price
  counts as free, as it does for budgets.

Among fitting models, those at or under the asked tier are equally welcome, and each tier over it
costs a candidate `COST_TIER_POINTS` of its score (out of 100) against the other providers of its
level: cheaper wins between healthy providers, a much healthier dearer one still wins.
"""

from __future__ import annotations

import attrs

from actors.config import COMPLEXITIES, COST_TIERS, QUALITIES, Config

__all__ = ["COST_TIER_POINTS", "CostTiers", "ModelGrade"]

#: Score points (of 100) a candidate loses for each tier its model is over the asked one: 6 %
#: of error rate, or 100 ms of latency at the seed's `latency_zero_ms`. Enough to choose the
#: cheaper of two providers answering alike; small enough that a provider browning out loses
#: its place within a second or so (on the flagship, 10 points kept requests on a browned-out
#: provider for seconds and doubled the p99; 3 points saved as much with the p99 near today's).
COST_TIER_POINTS = 3.0


@attrs.frozen
class ModelGrade:
    """A model's place in the matrices, as indexes into COMPLEXITIES, QUALITIES and COST_TIERS."""

    model: str
    complexity: int
    quality: int
    tier: int
    #: The tier comes from the model's price, not from a `[routing.cost]` row.
    by_price: bool = False

    @property
    def tier_name(self) -> str:
        return COST_TIERS[self.tier]

    def fits(self, complexity: int, quality: int) -> bool:
        """Up to a request of this complexity and quality (indexes)."""
        return self.complexity >= complexity and self.quality >= quality

    def over(self, tier: int) -> int:
        """How many tiers dearer than `tier` (an index) the model is; 0 at or under it."""
        return max(0, self.tier - tier)

    def describe(self) -> str:
        return f"{self.tier_name} by price" if self.by_price else self.tier_name


def _highest(rows: dict[str, tuple[str, ...]], order: tuple[str, ...]) -> dict[str, int]:
    """model -> index (in `order`) of the last row that lists it."""
    found: dict[str, int] = {}
    for index, name in enumerate(order):
        for model in rows.get(name, ()):
            found[model] = index
    return found


class CostTiers:
    """The grade of every model of a config (see the module's docstring)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        routing = config.routing
        self._complexity = _highest(routing.complexity, COMPLEXITIES)
        self._quality = _highest(routing.quality, QUALITIES)
        self._tier: dict[str, int] = {}
        for index, name in reversed(list(enumerate(COST_TIERS))):
            for model in routing.cost.get(name, ()):
                self._tier[model] = index  # the cheapest row that lists it wins
        #: The dearest listed model's price of each tier (None: the row lists none).
        self._ceilings: list[float | None] = []
        for name in COST_TIERS:
            prices = [self._price(model) for model in routing.cost.get(name, ())]
            self._ceilings.append(max(prices) if prices else None)
        self._grades: dict[str, ModelGrade] = {}

    def _price(self, model: str) -> float:
        info = self._config.model_info(model)
        return info.input_usd_per_mtok + info.output_usd_per_mtok

    def _tier_by_price(self, model: str) -> int:
        price = self._price(model)
        for index, ceiling in enumerate(self._ceilings):
            if ceiling is not None and price <= ceiling:
                return index
        return len(COST_TIERS) - 1

    def grade(self, model: str) -> ModelGrade:
        grade = self._grades.get(model)
        if grade is None:
            listed = self._tier.get(model)
            grade = ModelGrade(
                model,
                self._complexity.get(model, 0),
                self._quality.get(model, 0),
                self._tier_by_price(model) if listed is None else listed,
                by_price=listed is None,
            )
            self._grades[model] = grade
        return grade
