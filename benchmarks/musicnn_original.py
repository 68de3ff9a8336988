"""Time the original musicnn 0.1.0 (TensorFlow) on one audio file; run by ``bench_tagger``.

This script runs in a *separate* Python environment that has TensorFlow and musicnn (it never
imports hitsong): ``bench_tagger`` starts it with the interpreter named by
``HITSONG_MUSICNN_PYTHON``. Such an environment (outside the repository)::

    python3 -m venv /work/tf-venv
    /work/tf-venv/bin/pip install tensorflow-cpu==2.15.1 librosa soundfile
    /work/tf-venv/bin/pip install --no-deps musicnn==0.1.0

It builds MTT_musicnn's graph once (musicnn's own ``models.define_model`` and checkpoint),
prints one JSON line (versions, threads, build seconds), then serves timing requests so that the
benchmark can interleave the original with our paths in the same rounds (a load change on the
shared machine then hits both alike). Each line on stdin names a mode; the reply is one JSON line
with the seconds (wall and this process's CPU) of one warm call and the song-level tag means (to compare with the port):

- ``per_patch``: the original's way, ``extractor.batch_data(path)`` (librosa load, mel,
  patches) then one ``session.run`` per patch (musicnn's ``BATCH_SIZE = 1``);
- ``batched``: the same front end, then all patches in one ``session.run``.

An empty line or end of input stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path", help="audio file (the benchmark's 60-s clip)")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (default 2)")
    args = p.parse_args(argv)

    import numpy as np
    import tensorflow as tf
    from musicnn import configuration, extractor, models

    tf.compat.v1.disable_eager_execution()
    n_frames = 187  # 3 s, as musicnn's extractor computes it for input_length=3
    t0 = time.perf_counter()
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, configuration.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        logits = models.define_model(x, is_training, "MTT_musicnn", len(configuration.MTT_LABELS))[0]
        probs = tf.nn.sigmoid(logits)
    session_config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=args.threads, inter_op_parallelism_threads=1)
    sess = tf.compat.v1.Session(config=session_config)
    sess.run(tf.compat.v1.global_variables_initializer())
    tf.compat.v1.train.Saver().restore(sess, os.path.join(os.path.dirname(extractor.__file__), "MTT_musicnn") + "/")
    build = time.perf_counter() - t0

    def per_patch() -> np.ndarray:
        batch, _ = extractor.batch_data(args.path, n_frames, n_frames)
        step = configuration.BATCH_SIZE
        return np.concatenate(
            [sess.run(probs, {x: batch[i : i + step], is_training: False}) for i in range(0, len(batch), step)]
        )

    def batched() -> np.ndarray:
        batch, _ = extractor.batch_data(args.path, n_frames, n_frames)
        return sess.run(probs, {x: batch, is_training: False})

    modes = {"per_patch": per_patch, "batched": batched}
    for fn in modes.values():  # warm-up
        fn()
    hello = {
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "threads": args.threads,
        "graph_build_and_restore": build,
    }
    sys.stdout.write(json.dumps(hello) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        mode = line.strip()
        if not mode:
            break
        start, cpu = time.perf_counter(), time.process_time()
        taggram = modes[mode]()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        reply = {"mode": mode, "seconds": seconds, "cpu_seconds": cpu, "patches": int(taggram.shape[0]),
                 "song_mean": taggram.mean(axis=0).astype(float).tolist()}  # fmt: skip
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
