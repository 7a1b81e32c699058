"""IB historical-data pacing rules, an optional soft rate limit and the injectable pacing storm."""

from __future__ import annotations

from collections import deque

from ghtrader_assets.sim.ib.config import GatewayConfig


class Pacer:
    """Decides whether a historical request is a pacing violation; only accepted requests are remembered."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.open = 0
        self.storm_left = 0
        self._recent: deque[tuple[float, tuple[object, ...], object]] = deque()

    def check(self, request: tuple[object, ...], contract: object, now: float) -> str | None:
        """The violated rule, or None after recording the request as accepted."""
        c = self.config
        horizon = max(c.identical_window_s, c.same_contract_window_s, c.soft_window_s)
        while self._recent and now - self._recent[0][0] > horizon:
            self._recent.popleft()
        if self.storm_left > 0:
            self.storm_left -= 1
            return "pacing storm"
        if self.open >= c.max_open:
            return f"more than {c.max_open} open historical requests"
        recent = [(now - t, r, k) for t, r, k in self._recent]
        if any(age < c.identical_window_s and r == request for age, r, _ in recent):
            return f"identical request within {c.identical_window_s:g} s"
        if sum(age < c.same_contract_window_s and k == contract for age, _, k in recent) >= c.same_contract_max:
            return f"more than {c.same_contract_max} requests for one contract within {c.same_contract_window_s:g} s"
        if c.soft_rate_per_s is not None:
            if sum(age < c.soft_window_s for age, _, _ in recent) >= c.soft_rate_per_s * c.soft_window_s:
                return f"soft limit of {c.soft_rate_per_s:g} requests/s"
        self._recent.append((now, request, contract))
        return None
