"""IO facts: what a test takes in from the world, recorded once and replayed.

``PriceService`` stands in for a live quote API: every call returns a
different price. Wrapped in ``replay.fact`` the test sees the recorded
price on every replay, and the service is not called at all.

    pytest examples --replay=record   # call the service, write cassettes
    pytest examples --replay=strict   # serve everything from the cassettes
"""

from __future__ import annotations

import datetime as dt
import random
import uuid

import pytest


class PriceService:
    """A fake, non-deterministic price feed (no network)."""

    def __init__(self) -> None:
        self.calls = 0

    def quote(self, symbol: str) -> dict:
        self.calls += 1
        return {"symbol": symbol, "price": round(random.uniform(90.0, 110.0), 2), "ccy": "USD"}

    def history(self, symbol: str, days: int) -> list[float]:
        self.calls += 1
        return [round(random.uniform(90.0, 110.0), 2) for _ in range(days)]


def replaying(replay) -> bool:
    return replay.mode.value in ("replay", "strict")


def place_order(replay, service: PriceService, symbol: str, qty: int) -> dict:
    """Code under test: everything it takes from the world goes through replay."""
    quote = replay.fact(f"quote:{symbol}", service.quote, symbol)
    return {
        "id": str(replay.uuid4()),
        "symbol": symbol,
        "qty": qty,
        "total": round(quote["price"] * qty, 2),
        "placed_at_ms": replay.now_millis(),
        "nonce": replay.random_bytes(16).hex(),
    }


def test_quote(replay):
    service = PriceService()
    price = replay.fact("quote", lambda: service.quote("ACME")["price"])
    stamp = replay.now_millis()
    token = replay.random_bytes(16)
    assert price > 0
    assert stamp > 0
    assert len(token) == 16
    assert service.calls == (0 if replaying(replay) else 1)


def test_order(replay):
    service = PriceService()
    order = place_order(replay, service, "ACME", qty=3)
    assert isinstance(uuid.UUID(order["id"]), uuid.UUID)
    assert 270.0 <= order["total"] <= 330.0
    assert len(order["nonce"]) == 32


def test_clock_and_ids(replay):
    start = replay.now()
    first, second = replay.uuid4(), replay.uuid4()
    end = replay.now()
    assert start.tzinfo is dt.timezone.utc
    assert start <= end
    assert first != second  # each call is its own fact: ...|ord:0, ...|ord:1


@pytest.mark.parametrize("symbol", ["ACME", "INITECH"])
def test_quote_per_symbol(replay, symbol):
    # One cassette per parameter: cassettes/test_quote/test_quote_per_symbol[ACME].yaml
    service = PriceService()
    quote = replay.fact("quote", service.quote, symbol)
    assert quote["symbol"] == symbol
    assert 90.0 <= quote["price"] <= 110.0


def test_price_history(replay):
    # A large value (over replay_blob_threshold, 4096 bytes of JSON) is stored
    # in cassettes/.blobs/<blake3>.json and verified against its digest on load.
    service = PriceService()
    closes = replay.fact("history:ACME", service.history, "ACME", days=730)
    assert len(closes) == 730
    assert min(closes) >= 90.0
