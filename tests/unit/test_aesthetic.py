"""The aesthetic head is resolved before the graph: weights by path or public name (never
downloaded in tests), and refused for a CLIP whose embeddings it was not trained on."""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import pytest

from tests.support.judging import write_aesthetic_head
from vidcurate.pipeline.options import AestheticConfig, ConfigError
from vidcurate.transforms.models import aesthetic
from vidcurate.transforms.models.aesthetic import DEFAULT_AESTHETIC_HEAD, resolve_aesthetic


def _cfg(model):
    return AestheticConfig(model=str(model), batch_size=8)


def test_a_local_head_is_read_and_identified_by_content(tmp_path):
    head = write_aesthetic_head(tmp_path / "head.pth", 64)
    cfg = resolve_aesthetic(_cfg(head), "tiny", "/w/tiny.pt", True, 64)
    assert cfg.input_dim == 64 and cfg.checkpoint_path == str(head)
    assert cfg.model_id.startswith("aesthetic:sha256:")
    other = resolve_aesthetic(_cfg(write_aesthetic_head(tmp_path / "b.pth", 64, seed=1)),
                              "tiny", "/w/tiny.pt", True, 64)
    assert other.model_id != cfg.model_id


def test_a_head_for_another_embedding_size_is_refused(tmp_path):
    head = write_aesthetic_head(tmp_path / "head.pth", 768)
    with pytest.raises(ConfigError, match=r"768-d .* ViT-B-32 gives 512-d"):
        resolve_aesthetic(_cfg(head), "ViT-B-32", "laion2b_s34b_b79k", False, 512)
    with pytest.raises(ConfigError, match="drop --no-clip"):
        resolve_aesthetic(_cfg(head), None, None, False, None)


def test_files_that_are_not_a_head_are_refused(tmp_path):
    import torch

    torch.save({"weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="improved-aesthetic-predictor"):
        resolve_aesthetic(_cfg(tmp_path / "other.pth"), "tiny", "p", True, 64)
    with pytest.raises(ConfigError, match="neither a file nor a known head"):
        resolve_aesthetic(_cfg(tmp_path / "missing.pth"), "tiny", "p", True, 64)


def test_the_public_head_needs_its_clip_and_is_downloaded_once(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fetched = []

    def fake_download(url, dest, timeout_s=30.0):
        fetched.append(url)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        write_aesthetic_head(Path(dest), 768)

    monkeypatch.setattr(aesthetic, "download", fake_download)
    cfg = _cfg(DEFAULT_AESTHETIC_HEAD)
    # Trained on OpenAI ViT-L/14: another model, or other ViT-L-14 weights, is refused
    # before anything is fetched, even where the embedding size matches.
    with pytest.raises(ConfigError, match="--clip-model ViT-L-14 --clip-pretrained openai"):
        resolve_aesthetic(cfg, "ViT-B-32", "laion2b_s34b_b79k", False, 512)
    with pytest.raises(ConfigError, match="trained on CLIP ViT-L-14/openai"):
        resolve_aesthetic(cfg, "ViT-L-14", "laion2b_s32b_b82k", False, 768)
    assert fetched == []
    resolved = resolve_aesthetic(cfg, "ViT-L-14", "openai", False, 768)
    assert fetched == [aesthetic.PUBLIC_HEADS[DEFAULT_AESTHETIC_HEAD].url]
    assert "improved-aesthetic-predictor" in fetched[0] and fetched[0].endswith(".pth")
    assert resolved.model_id == f"aesthetic:{DEFAULT_AESTHETIC_HEAD}"
    assert resolved.input_dim == 768
    # Cached: a second run does not fetch again.
    resolve_aesthetic(cfg, "ViT-L-14", "openai", False, 768)
    assert len(fetched) == 1


def test_a_failed_download_says_how_to_pass_a_path(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(url, dest, timeout_s=30.0):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(aesthetic, "download", offline)
    with pytest.raises(ConfigError, match="--aesthetic-model PATH"):
        resolve_aesthetic(_cfg(DEFAULT_AESTHETIC_HEAD), "ViT-L-14", "openai", False, 768)
