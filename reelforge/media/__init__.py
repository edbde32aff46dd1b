"""Media files: video writing, probing and joining, audio tracks, posters and contact sheets, atomic file helpers."""

from reelforge.media.audio import fit_samples, probe_audio, read_audio, set_audio, sound_label
from reelforge.media.files import atomic_write_bytes, make_dirs, publish_copy
from reelforge.media.join import concat_mp4, streams_match
from reelforge.media.posters import contact_sheet, save_poster
from reelforge.media.video import AudioInfo, VideoInfo, VideoWriter, encode_mp4, probe, read_frame, read_frames

__all__ = [
    "AudioInfo", "VideoInfo", "VideoWriter", "atomic_write_bytes", "concat_mp4", "contact_sheet", "encode_mp4",
    "fit_samples", "make_dirs", "probe", "probe_audio", "publish_copy", "read_audio", "read_frame", "read_frames",
    "save_poster", "set_audio", "sound_label", "streams_match",
]
