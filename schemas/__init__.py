"""Typed records passed between stages and the pyarrow schemas of the output tables."""
