"""The audio front end: decode the middle of a song, resample, and compute its log-mel.

Implements the input representation of Yang et al. (ICASSP 2017), section 3.1: the middle
60 s of each song, mono, 22,050 Hz, a 128-band log-mel of 646 frames. Modules:
:mod:`.config` (``AudioConfig`` and shared constants), :mod:`.decode` (seek-and-decode of the
middle segment, odd input; :mod:`.info` its flags, :mod:`.mpg123` exact MP3 seeks,
:mod:`.ffmpeg` containers libsndfile cannot read), :mod:`.mel` (the numpy log-mel and the one
log compression), :mod:`.torchmel` (the same log-mel as a torch module; imported on its own so
the numpy path never imports torch).
"""

from hitsong.audio.config import LOG_SCALE, RESAMPLE_QUALITY, TAGGER_SR, AudioConfig
from hitsong.audio.decode import SILENCE_PEAK, decode_for_features, decode_middle, fit_center, load_segment
from hitsong.audio.info import DecodeInfo, FeatureFlags
from hitsong.audio.mel import log_compress, log_mel, mel_filterbank, mel_stats

__all__ = [
    "LOG_SCALE",
    "RESAMPLE_QUALITY",
    "SILENCE_PEAK",
    "TAGGER_SR",
    "AudioConfig",
    "DecodeInfo",
    "FeatureFlags",
    "decode_for_features",
    "decode_middle",
    "fit_center",
    "load_segment",
    "log_compress",
    "log_mel",
    "mel_filterbank",
    "mel_stats",
]
