"""Engine tests: fixtures live in engine_fixtures.py (plain helpers, imported by name)."""
