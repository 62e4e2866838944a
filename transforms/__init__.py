"""Pipeline stages: one module each, a thin PTransform over plain per-element functions."""
