"""Wall time and peak memory of one whole command, as the benchmarks report them."""

from __future__ import annotations

import json
import subprocess
import sys

# A fresh Python parent per measurement, so that ru_maxrss of its children is this
# command's own largest process (not the benchmark's, nor an earlier command's).
_PROBE = ("import resource, subprocess, sys, time, json;"
          "t = time.perf_counter(); subprocess.run(sys.argv[1:], check=True,"
          " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL);"
          "print(json.dumps({'wall': time.perf_counter() - t, 'rss_mb':"
          " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")


def wall_and_peak(cmd: list[str]) -> dict[str, float]:
    """{'wall': seconds, 'rss_mb': the largest process's peak RSS in MB}; raises when
    the command fails."""
    done = subprocess.run([sys.executable, "-c", _PROBE, *cmd], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)
