"""The suite runs with the model hubs offline and an empty cache (tests/conftest.py), so
tests that expect named weights to be unavailable pass the same on a connected machine."""

from __future__ import annotations

import os

import pytest

from tests.support.helpers import NO_HUB_CACHE


def test_huggingface_hub_saw_the_offline_settings():
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE
    assert os.path.join(NO_HUB_CACHE, "hub") == constants.HF_HUB_CACHE
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_a_named_model_cannot_be_fetched():
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip_config.json")
