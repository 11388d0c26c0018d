"""Show one entry per series: the best-placed one."""

from __future__ import annotations

import numpy as np

from app.reranking.rule import Phase, Rule, RuleConfig
from app.reranking.slate import RerankContext, Slate


class SeriesDedupConfig(RuleConfig):
    """Keep only the best-placed item of each series; items without a series are untouched."""


class SeriesDedup(Rule[SeriesDedupConfig]):
    name = "series_dedup"
    phase = Phase.FILTER
    config_type = SeriesDedupConfig

    def apply(self, slate: Slate, context: RerankContext) -> Slate:
        if not len(slate):
            return slate
        series = self.items.series[slate.items]
        in_series = np.flatnonzero(series >= 0)
        codes, first, counts = np.unique(series[in_series], return_index=True, return_counts=True)
        if (counts == 1).all():
            return slate
        keep = series < 0
        keep[in_series[first]] = True
        for code, position, count in zip(codes, in_series[first], counts, strict=True):
            if count > 1:
                others = f"{count - 1} other" + ("s" if count > 2 else "")
                slate.note(
                    int(position),
                    self.name,
                    f"kept as best of series '{self._series_name(int(code))}' (dropped {others})",
                )
        return slate.take(keep)

    def _series_name(self, code: int) -> str:
        names = self.items.series_names
        return names[code] if code < len(names) else f"#{code}"
