"""--detector transnetv2 / ensemble on media: our network path against the package's own
predict_video, and golden cuts per detector on generated and real footage (the CLI:
tests/e2e/test_detector_cli.py)."""

import numpy as np
import pytest

from tests.support.media import Clip, Join, make_cuts_video, make_joined_video
from vidcurate.pipeline.demo import sample_dir
from vidcurate.schemas.records import Source
from vidcurate.transforms.detect_scenes import detect_scenes
from vidcurate.transforms.models import transnetv2 as tn
from vidcurate.transforms.probe import probe_source
from vidcurate.transforms.split_config import DEFAULT_THRESHOLDS, SplitConfig
from vidcurate.transforms.transitions import TransitionConfig


def _cfg(detector: str) -> SplitConfig:
    return SplitConfig(detector, DEFAULT_THRESHOLDS[detector], 15, 256, 5.0, 7.0, 1.0, 60.0,
                       0.0, transitions=TransitionConfig())


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Hard cuts at frames 40 and 80 between lavfi sources."""
    path = tmp_path_factory.mktemp("gen") / "cuts.mp4"
    make_cuts_video(path, [Clip("testsrc2", 1.6), Clip("mandelbrot", 1.6),
                           Clip("gradients", 1.6)], audio=False)
    return probe_source(Source(uri=str(path), video_id="gen"))


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Big Buck Bunny, a street (hard cut at 75), a man in a car (a 0.8 s dissolve over
    frames 115-135)."""
    path, truth = make_joined_video(
        tmp_path_factory.mktemp("real") / "joined.mp4",
        [Clip("bunny", 3), Clip("street", 2.4), Clip("car", 3)],
        [Join("cut"), Join("dissolve", 0.8)], footage=sample_dir())
    assert [(t.kind, t.start, t.end) for t in truth] == [("cut", 75, 75),
                                                         ("dissolve", 115, 135)]
    return probe_source(Source(uri=str(path), video_id="real"))


def _found(video, detector):
    s = detect_scenes(video, _cfg(detector))
    return ([b.frame for b in s.boundaries if b.kind == "detected"],
            [(t.kind, t.start_frame, t.end_frame) for t in s.transitions])


# Golden: what each detector finds (measured; the truth is cuts 40 and 80).
@pytest.mark.parametrize("detector, cuts", [
    ("content", [40, 80]), ("adaptive", [40, 80]), ("transnetv2", [40, 80]),
    ("ensemble", [40, 80])])
def test_golden_cuts_on_generated_footage(generated, detector, cuts):
    assert _found(generated, detector) == (cuts, [])


# Golden on real footage: content finds the hard cut only, and the transition search
# does not see this dissolve between two moving shots; TransNetV2 puts a cut inside it
# and its many-hot head makes it a boundary zone (truth 115-135).
@pytest.mark.parametrize("detector, cuts, zones", [
    ("content", [75], []),
    ("adaptive", [75], []),
    ("transnetv2", [75, 126], [("gradual", 117, 136)]),
    ("ensemble", [75, 126], [("gradual", 117, 136)])])
def test_golden_cuts_on_real_footage(real, detector, cuts, zones):
    assert _found(real, detector) == (cuts, zones)


def test_our_windows_match_the_package_s_predict_video(real):
    """Same frames (the package's own 48x27 decode): our streamed, batched windows give
    the package's predictions."""
    package = tn.import_transnetv2()
    ref = package.TransNetV2(device="cpu")
    import torch

    torch.use_deterministic_algorithms(False)  # the package's constructor turned it on
    frames, single, many = ref.predict_video(real.local_path, quiet=True)
    net = tn.load_network(tn.resolve_weights(tn.TransNetConfig()).weights_path)
    ours_single, ours_many = tn.predict_frames(net, frames.numpy(), batch_windows=3)
    assert len(ours_single) == len(frames) == real.info.nb_frames
    np.testing.assert_allclose(ours_single, single.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours_many, many.numpy(), atol=1e-5)
    assert int(np.argmax(ours_single[60:90])) + 60 == 74  # the hard cut's last frame
