"""ls_backend.predictor: answers from the stored ranking, and a bounded cache of loaded models."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from autoal_engine.engine import Engine
from ls_backend.labeling import parse_label_config
from ls_backend.predictor import Predictor
from ls_backend.settings import Settings
from ls_backend.store import Store
from tests.conftest import fast_config

CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="digit" toName="image">'
    + "".join(f'<Choice value="{d}"/>' for d in range(10))
    + "</Choices></View>"
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    digits = load_digits()
    images, labels = digits.images[:60] / 16.0, [str(d) for d in digits.target[:60]]
    folder = tmp_path_factory.mktemp("checkpoint")
    Engine(fast_config()).fit(images, labels, classes=[str(d) for d in range(10)]).save(folder)
    return folder


def test_loaded_models_are_bounded_least_recently_used_first_out(tmp_path, checkpoint):
    settings = Settings(model_dir=tmp_path, predict_cached_models=2)
    store = Store(settings.database_path)
    for project_id in (1, 2, 3):
        store.commit_model(project_id, {"model_version": f"autoal-v{project_id}", "checkpoint": str(checkpoint)}, [])
    predictor = Predictor(settings, store)
    first = predictor._engine(1)
    assert first[0] == "autoal-v1"
    assert predictor._engine(1)[1] is first[1]  # the same loaded engine, not loaded again
    predictor._engine(2)
    predictor._engine(1)  # 1 is now the most recently used
    predictor._engine(3)
    assert list(predictor._engines) == [1, 3]  # 2 went out, the bound held
    assert predictor._engine(2)[0] == "autoal-v2"  # loaded again when asked
    assert list(predictor._engines) == [3, 2]


def test_stored_ranking_answers_with_one_prediction_shape(tmp_path):
    settings = Settings(model_dir=tmp_path)
    store = Store(settings.database_path)
    rows = [{"task_id": 10, "rank": 1, "priority": 0.75, "score": 0.25, "predicted_label": "3"}]
    store.commit_model(1, {"model_version": "autoal-v1", "checkpoint": "/nowhere"}, rows)
    interface = parse_label_config(CONFIG)
    results = Predictor(settings, store).predict(1, [{"id": 10}, {"id": 11}], interface)
    assert results[0] == {
        "result": [{"from_name": "digit", "to_name": "image", "type": "choices", "value": {"choices": ["3"]}}],
        "score": 0.25,
        "model_version": "autoal-v1",
    }
    assert results[1] == []  # not ranked, and the model does not load: no prediction rather than an error
    assert np.isfinite(results[0]["score"])
