"""The work folders vidcurate reads back from are private to the user who runs it
(issue 28: a pickle swapped in a shared /tmp folder ran code as that user)."""

from __future__ import annotations

import datetime as dt
import os
import stat

import numpy as np
import pytest

from vidcurate.schemas.records import ErrorRecord, Source
from vidcurate.transforms.core import ConfigError, private_dir
from vidcurate.transforms.manifest import ListedBatch


def test_creates_a_folder_only_its_user_can_enter(tmp_path):
    folder = private_dir(str(tmp_path / "a" / "run-x"))
    assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700
    assert private_dir(folder) == folder  # an existing private folder is fine


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_refuses_a_folder_others_can_write(tmp_path, mode):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(ConfigError, match="can be written by other users"):
        private_dir(str(folder))


def test_a_named_work_dir_may_be_group_writable_but_not_world_writable(tmp_path):
    team = tmp_path / "team"
    team.mkdir()
    team.chmod(0o775)
    assert private_dir(str(team), strict=False) == str(team)
    team.chmod(0o777)
    with pytest.raises(ConfigError, match="can be written by other users"):
        private_dir(str(team), strict=False)


def test_refuses_a_symlink_in_place_of_the_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "work").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="symbolic link"):
        private_dir(str(tmp_path / "work"))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="giving a folder to another user needs root")
def test_refuses_a_folder_of_another_user(tmp_path):
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to another user"):
        private_dir(str(folder))


def test_a_listed_batch_travels_as_data_and_comes_back_whole():
    when = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    batch = ListedBatch(
        sources=[Source(uri="/v/a.mp4", video_id="a1", title="A", description=None,
                        license="CC-BY-4.0", origin="m.csv#row=2",
                        metadata={"tags": np.array(["x", "y"]), "n": 3,
                                  "when": dt.date(2020, 1, 2)})],
        errors=[ErrorRecord(stage="manifest", source_uri="m.csv#row=3",
                            error_type="bad_manifest_row", message="no uri", run_id="",
                            time=when)],
        duplicates=2)
    lines = list(batch.to_lines())
    assert not any("pickle" in line or "__reduce__" in line for line in lines)
    back = ListedBatch.from_lines(lines)
    assert back.duplicates == 2
    assert back.errors == batch.errors
    [source] = back.sources
    assert source.metadata == {"tags": ["x", "y"], "n": 3, "when": "2020-01-02"}
    assert (source.uri, source.video_id, source.title, source.license, source.origin) == (
        "/v/a.mp4", "a1", "A", "CC-BY-4.0", "m.csv#row=2")
