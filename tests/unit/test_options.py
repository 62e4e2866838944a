import os
import re

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
                 "--clip-media=exact", "--project", "p"])
    with pytest.raises(ConfigError, match="did you mean --min-clip-s"):
        check_flags(["--min-clips-s", "9"])
    with pytest.raises(ConfigError, match="did you mean --clip_media"):
        check_flags(["--clip_medai=copy"])


@pytest.mark.parametrize("runner,flags", [
    ("DataflowRunner", ["--project", "p", "--region", "europe-west4", "--temp_location",
                        "gs://b/tmp", "--staging_location=gs://b/s", "--machine_type",
                        "n1-standard-4", "--sdk_container_image", "img", "--experiments",
                        "use_runner_v2", "--save_main_session", "--num_workers", "3"]),
    ("FlinkRunner", ["--flink_master", "localhost:8081", "--flink_version", "1.17",
                     "--parallelism", "2", "--environment_type", "LOOPBACK"]),
    ("SparkRunner", ["--spark_master_url", "spark://h:7077", "--environment_type=DOCKER"]),
    ("DirectRunner", ["--direct_num_workers", "2", "--direct_running_mode",
                      "multi_processing"]),
    ("flink", []),  # Beam matches runner names in any case, "Runner" optional
    ("vidcurate.pipeline.dask_runner.DaskRunner", ["--dask_client_address", "h:8786"]),
])
def test_runners_and_their_own_flags_are_accepted(runner, flags):
    from vidcurate.pipeline.options import check_flags

    check_flags(["--input", "x", "--runner", runner, *flags])


@pytest.mark.parametrize("args,message", [
    # Beam would drop these with a warning and run with the defaults.
    (["--direct_num_worker", "2"], "unknown option --direct_num_worker: did you mean "
     "--direct_num_workers?"),
    (["--direct-num-workers", "2"], "did you mean --direct_num_workers?"),  # Beam: _ only
    (["--runner", "DataflowRunner", "--temp-location", "gs://b/t"],
     "did you mean --temp_location?"),
    (["--projetc", "p"], "did you mean --project?"),
    (["--some_runner_flag", "1"], "unknown option --some_runner_flag"),
    # Beam would fail with a traceback once the graph is built.
    (["--runner", "DirectRuner"], "unknown --runner DirectRuner: did you mean DirectRunner?"),
    (["--runner=Fink"], "did you mean FlinkRunner?"),
    (["--runner", "no_such_package.Runner"], "--runner no_such_package.Runner: cannot "
     "import no_such_package"),
])
def test_unknown_beam_flags_and_runners_are_errors_with_a_suggestion(args, message):
    from vidcurate.pipeline.options import check_flags

    with pytest.raises(ConfigError, match=re.escape(message)):
        check_flags(["--input", "x", *args])


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
