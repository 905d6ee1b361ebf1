"""GPU ring-slot publishes and array checks; the same test runs on CuPy or on NumPy.

The ring's slot table lives on the device when CuPy sees one, else in NumPy.
The cassette recorded on either replays on both: ring streams are compared
record by record, arrays on the current array's own device.

A ring record's output digest is blake3 of the output's exact bytes, so only
outputs that are bit-identical on every BLAS and GPU belong in it: here the
matmul's operands are small integers, exact in float32 with every partial
sum, so any summation order gives the same bytes. Results that may differ in
the last bits from one device to another (the softmax) are checked with
``check_array`` and its tolerances instead.
"""

from __future__ import annotations

import pytest

from pytest_replay.ring import array_module

xp = array_module()  # cupy when it is installed and sees a GPU, else numpy

OP_MATMUL, OP_SOFTMAX = 7, 9


def softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = xp.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def test_dispatch(replay):
    ring = replay.ring("dispatch", capacity=256)
    # one publish per request, then a vectorised batch for the softmax fan-out
    slot = ring.publish(opcode=OP_MATMUL, tenant=3, args=(64, 64, 32, 0))
    weights = xp.arange(64 * 32, dtype=xp.float32).reshape(64, 32) % 17 - 8
    inputs = xp.arange(64 * 64, dtype=xp.float32).reshape(64, 64) % 13 - 6
    logits = (inputs @ weights) / 64  # exact: |partial sums| < 2**24, a power-of-two scale
    ring.complete(slot, status=2, output=logits)

    tenants = xp.arange(64, dtype=xp.uint32) % 4
    args = xp.stack([xp.arange(64, dtype=xp.uint32), xp.full(64, 32, dtype=xp.uint32)], axis=1)
    ring.publish_many(xp.full(64, OP_SOFTMAX, dtype=xp.uint32), tenants, args)
    probs = softmax(logits)

    replay.check_array("logits", logits, rtol=1e-4, atol=1e-6)
    replay.check_array("probs", probs)
    assert float(probs.sum()) == pytest.approx(64.0, rel=1e-5)


def test_tenant_scoping(replay):
    ring = replay.ring("tenants", capacity=32)
    ring.publish_many(xp.arange(12, dtype=xp.uint32), xp.arange(12, dtype=xp.uint32) % 3)
    mine = ring.records(tenant=1)
    assert len(mine) == 4 and set(int(t) for t in mine["tenant_id"]) == {1}
