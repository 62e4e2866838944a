"""Media helpers, one module per job; every ffmpeg / ffprobe call on a source goes
through ``tools`` (allow-listed demuxers, memory and time limits).

- ``limits``: MediaError and its kinds, MediaLimits and the time limits.
- ``tools``: running ffmpeg / ffprobe, streamed output, failure classification.
- ``probing``: ffprobe JSON into VideoInfo, packet listings, verified duration.
- ``decoding``: the one downscaled decode, frames by number, keyframe images.
- ``audio``: speech windows from one streamed audio decode.
- ``cutting``: clip media and keyframe files.
- ``storage``: digests, publishing files, the per-worker cache of remote copies.
"""
