"""The pretrained MagnaTagATune auto-tagger (the paper's m4 features and Fig. 4 genres).

musicnn 0.1.0's MTT_musicnn and MTT_vgg (ISC licence, Jordi Pons, MTG-UPF), re-implemented in
PyTorch (:mod:`.nets`), with weights read from the original TensorFlow checkpoints without
TensorFlow (``tools/musicnn_checkpoint.py``, ``tools/convert_musicnn.py``) and the original front
end (:mod:`.frontend`).
Inference runs through :mod:`.kernels` in the precision chosen by :mod:`.precision`: ``exact``
(float32) or ``fast`` (int8 and bfloat16 convolutions, where the CPU has native int8 and bfloat16
dot products).

>>> from hitsong.tagger import Tagger  # doctest: +SKIP
>>> tagger = Tagger.from_pretrained("MTT_musicnn", device="auto", precision="auto")  # doctest: +SKIP
>>> result = tagger.tag("song.mp3")  # doctest: +SKIP
>>> result.taggram.shape, result.song.shape, result.top(3)  # doctest: +SKIP
"""

from hitsong.tagger.inference import GENRE_TAGS, MTT_TAGS, Tagger, TagResult, predominant_genre

__all__ = ["GENRE_TAGS", "MTT_TAGS", "TagResult", "Tagger", "predominant_genre"]
