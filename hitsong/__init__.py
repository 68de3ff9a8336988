"""hitsong: audio-based hit song prediction (Yang et al., ICASSP 2017) as software.

The library and the ``hitsong`` command. It never imports mlflow or streamlit: those live in
``registry/`` and ``dashboard/``, which call into this package (DESIGN.md section 1).
"""

__version__ = "0.1.0"
