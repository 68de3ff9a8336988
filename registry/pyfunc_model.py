"""The "models from code" file MLflow copies into every logged hitsong model and runs at load.

It only names the model class; everything else is in ``registry.pyfunc``.
"""

import mlflow

from registry.pyfunc import HitsongAudioModel

mlflow.models.set_model(HitsongAudioModel())
