"""The dataset card's header: Hugging Face licence identifiers from the licence texts
that manifests and video sites give, and the size category."""

from __future__ import annotations

import pytest

from vidcurate.pipeline.publish import _yaml_header, license_id, size_category


@pytest.mark.parametrize(("text", "expected"), [
    ("CC BY 4.0", "cc-by-4.0"),
    ("cc-by-sa-4.0", "cc-by-sa-4.0"),
    ("Creative Commons Attribution-ShareAlike 4.0 International", "cc-by-sa-4.0"),
    ("Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International",
     "cc-by-nc-nd-4.0"),
    ("Creative Commons Attribution license (reuse allowed)", "cc-by-3.0"),  # YouTube's
    ("CC0", "cc0-1.0"),
    ("MIT License", "mit"),
    (None, "unknown"),
    ("  ", "unknown"),
    ("Standard YouTube License", None),
    ("all rights reserved", None),
])
def test_license_id(text, expected):
    assert license_id(text) == expected


@pytest.mark.parametrize(("n", "expected"), [
    (0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (99_999, "10K<n<100K"),
    (100_000, "100K<n<1M"), (5_000_000, "1M<n<10M"), (2_000_000_000, "1B<n<10B")])
def test_size_category(n, expected):
    assert size_category(n) == expected


def test_header_says_other_when_any_licence_is_unknown_to_the_hub():
    counts = {"clips": 5, "captions": 0, "videos": 2}
    header = _yaml_header(["CC BY 4.0", "CC0"], counts)
    assert "license:\n- cc-by-4.0\n- cc0-1.0\n" in header
    header = _yaml_header(["CC BY 4.0", "Standard YouTube License"], counts)
    assert "license: other\n" in header
    # An empty table has no configuration: `datasets` cannot load an empty split.
    assert "config_name: captions" not in header and "config_name: videos" in header
