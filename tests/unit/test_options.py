import os

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from vidcurate.pipeline.options import ConfigError, RunConfig


def _cfg(*args):
    return RunConfig.from_options(PipelineOptions(["--input", "in", "--output", "out/", *args]))


def test_defaults_are_panda_70m():
    cfg = _cfg()
    s = cfg.split
    assert (s.detector, s.threshold, s.min_scene_len) == ("content", 25.0, 15)
    assert (s.max_cut_len, s.force_cut_after, s.min_clip_s, s.max_clip_s) == (5, 7, 2.5, 60)
    assert cfg.media.clip_media == "copy" and cfg.media.keyframes == 3
    assert os.path.isabs(cfg.output) and cfg.output.endswith("/out")
    assert _cfg("--detector", "adaptive").split.threshold == 3.0


def test_dash_and_underscore_spellings_and_beam_flags_pass_through():
    cfg = _cfg("--clip-media", "exact", "--min_clip_s", "1.5", "--runner", "DirectRunner",
               "--direct_num_workers", "2")
    assert cfg.media.clip_media == "exact" and cfg.split.min_clip_s == 1.5


def test_split_hash_changes_with_split_parameters_only():
    base = _cfg().split.params_hash
    assert _cfg("--clip-media", "none").split.params_hash == base
    assert _cfg("--scene-threshold", "30").split.params_hash != base
    assert _cfg("--trim-fraction", "0.1").split.params_hash != base


@pytest.mark.parametrize("args,message", [
    (["--min-clip-s", "5", "--max-clip-s", "4"], "--max-clip-s"),
    (["--trim-fraction", "0.5"], "--trim-fraction"),
    (["--scene-threshold", "-1"], "--scene-threshold"),
    (["--max-cut-len", "8", "--force-cut-after", "7"], "--force-cut-after"),
    (["--keyframes", "100"], "--keyframes"),
    (["--run-id", "../evil"], "--run-id"),
    (["--video-extensions", " , "], "--video-extensions"),
    (["--batch-videos", "-1"], "--batch-videos"),
])
def test_bad_values_fail_before_the_graph(args, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(*args)


def test_missing_input_or_output():
    with pytest.raises(ConfigError, match="--input"):
        RunConfig.from_options(PipelineOptions(["--output", "o"]))
    with pytest.raises(ConfigError, match="--output"):
        RunConfig.from_options(PipelineOptions(["--input", "i"]))


def test_local_output_is_made_absolute_and_glob_names_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = RunConfig.from_options(PipelineOptions(["--input", "in", "--output", "rel/out"]))
    assert cfg.output == str(tmp_path / "rel" / "out") == cfg.media.output
    remote = RunConfig.from_options(PipelineOptions(["--input", "i", "--output", "gs://b/o/"]))
    assert remote.output == "gs://b/o"
    with pytest.raises(ConfigError, match="glob character"):
        RunConfig.from_options(PipelineOptions(["--input", "i", "--output", "out[1]"]))


def test_near_miss_flags_are_errors_other_flags_pass_through():
    from vidcurate.pipeline.options import check_flags

    check_flags(["--input", "x", "--runner", "DirectRunner", "--direct_num_workers", "2",
                 "--clip-media=exact", "--project", "p", "--some_runner_flag", "1"])
    with pytest.raises(ConfigError, match="did you mean --min-clip-s"):
        check_flags(["--min-clips-s", "9"])
    with pytest.raises(ConfigError, match="did you mean --clip_media"):
        check_flags(["--clip_medai=copy"])


def test_batches_by_default_only_on_the_in_memory_runner():
    """The DirectRunner holds every collection whole: its runs go in batches unless told
    otherwise; runners that stream run in one pass; an explicit value always wins, and
    it is how work is grouped, not what a video's rows hold (resume ignores it)."""
    from vidcurate.pipeline.options import DEFAULT_BATCH_VIDEOS

    assert _cfg().batch_videos == DEFAULT_BATCH_VIDEOS
    assert _cfg("--runner", "DirectRunner").batch_videos == DEFAULT_BATCH_VIDEOS
    assert _cfg("--runner", "PrismRunner").batch_videos == DEFAULT_BATCH_VIDEOS
    assert _cfg("--runner", "DataflowRunner").batch_videos == 0
    assert _cfg("--runner", "vidcurate.pipeline.dask_runner.DaskRunner").batch_videos == 0
    assert _cfg("--batch-videos", "0").batch_videos == 0
    assert _cfg("--runner", "FlinkRunner", "--batch-videos", "50").batch_videos == 50
    assert _cfg("--batch-videos", "7").outputs_hash == _cfg().outputs_hash
