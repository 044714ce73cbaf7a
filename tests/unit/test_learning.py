"""Every registered model learns every kind of ``data=synthetic`` (table, sequence, image): a
few epochs reach clearly above chance. Covers issue 7, item 5: the default CNN stayed at chance
on 3x32x32 images (val_acc 0.100 for 6 epochs) while the MLP reached 0.72.

The image is the issue's 3x32x32: its per-pixel noise is 16 times the class signal, and the CNN
pools its maps from 32x32 to 8x8, which is where the failure lived: prototypes of nearly
independent pixels that pooling averaged away with the noise, then a blurring 8 -> 7 resample
before the head. Unfixed, the CNN case stays at 0.25-0.30 here; fixed, it reaches 0.86.
Fifteen short runs, about 10 s in all, hence the ``slow`` mark.
"""

from __future__ import annotations


import pytest

from dltrain.models import MODELS
from dltrain.train.loop import fit
from dltrain.train.run import build_job

pytestmark = pytest.mark.slow

SHAPES = {"table": [16], "sequence": [16, 4], "image": [3, 32, 32]}
NUM_CLASSES = 4
CHANCE = 1 / NUM_CLASSES
# the CNN's default widths train 4 times slower on 32x32 images; every other model trains with
# its schema defaults, as a user's run would
NARROW = {"cnn": {"channels": [8, 16], "hidden_size": 32}}




@pytest.mark.parametrize("kind", list(SHAPES))
@pytest.mark.parametrize("model_name", MODELS.names())
def test_every_model_learns_every_synthetic_kind(make_config, model_name, kind):
    config = make_config(
        model={"name": model_name, **NARROW.get(model_name, {})},
        optim={"name": "adam", "lr": 3e-3},
        data={"name": "synthetic", "shape": SHAPES[kind], "num_samples": 1000,
              "num_classes": NUM_CLASSES},
        trainer={"epochs": 6, "batch_size": 32},
    )
    history = fit(build_job(config)).history
    accuracy = max(row["val_acc"] for row in history)
    # 150 validation samples: chance scores 0.25 ± 0.035. Twice chance, not more: the recurrent
    # models, reading the image row by row, peak at 0.59-0.66 (over data and init seeds)
    assert accuracy > 2 * CHANCE, [round(row["val_acc"], 2) for row in history]
