"""HTTP as IO facts: vcrpy's client stubs record into the test's cassette, replay is by key."""
