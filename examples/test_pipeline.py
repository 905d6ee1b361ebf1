"""A tiny data pipeline: paged extraction, a transform, and content ids.

The fake ``OrdersApi`` pages through orders the way a live API would.
Calling ``replay.fact`` with the same key in a loop makes a sequence: the
k-th call gets the k-th recorded page. ``replay.record_value`` stores a
value once and returns its content id (a blake3 digest), which the pipeline
uses as a lineage id for the batch it loaded.
"""

from __future__ import annotations

ORDERS = [
    {"id": 1, "sku": "apple", "qty": 3, "cents": 120},
    {"id": 2, "sku": "pear", "qty": 1, "cents": 95},
    {"id": 3, "sku": "apple", "qty": 2, "cents": 120},
    {"id": 4, "sku": "fig", "qty": 12, "cents": 40},
    {"id": 5, "sku": "pear", "qty": 4, "cents": 95},
]


class OrdersApi:
    """Pretends to be a paginated HTTP API (no network)."""

    def __init__(self, page_size: int = 2) -> None:
        self.page_size = page_size
        self.offset = 0
        self.requests = 0

    def next_page(self) -> list[dict]:
        self.requests += 1
        page = ORDERS[self.offset : self.offset + self.page_size]
        self.offset += len(page)
        return page


def extract(replay, api: OrdersApi) -> list[dict]:
    rows: list[dict] = []
    while True:
        page = replay.fact("orders:page", api.next_page)  # a sequence of pages
        if not page:
            return rows
        rows.extend(page)


def revenue_by_sku(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        out[row["sku"]] = out.get(row["sku"], 0) + row["qty"] * row["cents"]
    return dict(sorted(out.items()))


def run_pipeline(replay, api: OrdersApi) -> dict:
    rows = extract(replay, api)
    batch_id = replay.record_value("batch:orders", rows)
    return {"batch": batch_id, "rows": len(rows), "revenue": revenue_by_sku(rows)}


def test_extract_pages_in_order(replay):
    api = OrdersApi(page_size=2)
    rows = extract(replay, api)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    # 3 full/partial pages and one empty page end the loop: 4 facts, one key.
    if replay.mode.value in ("replay", "strict"):
        assert api.requests == 0


def test_pipeline_summary(replay):
    summary = run_pipeline(replay, OrdersApi(page_size=2))
    assert summary["rows"] == 5
    assert summary["revenue"] == {"apple": 600, "fig": 480, "pear": 475}
    assert len(summary["batch"]) == 64  # blake3 hex of the batch's canonical JSON


def test_record_value_is_idempotent(replay):
    first = replay.record_value("schema", {"columns": ["id", "sku", "qty", "cents"]})
    again = replay.record_value("schema", {"columns": ["id", "sku", "qty", "cents"]})
    assert first == again


def test_two_sources_keep_their_own_order(replay):
    # Ordinals are per key: a new call of one key never shifts another key's values.
    fast, slow = OrdersApi(page_size=5), OrdersApi(page_size=1)
    first_fast = replay.fact("fast:page", fast.next_page)
    first_slow = replay.fact("slow:page", slow.next_page)
    second_slow = replay.fact("slow:page", slow.next_page)
    assert len(first_fast) == 5
    assert [first_slow[0]["id"], second_slow[0]["id"]] == [1, 2]
