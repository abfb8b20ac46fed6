"""Checks that a model trained under MirroredStrategy on two logical CPUs equals one device.

Example, in a test file of the tests folder:

```python
from mirrored_utils import mirrored_equivalence

def make_my_model():                      # called inside the strategy's scope
    x, _, y_semi = testing.tiny_data()
    model = tfssl.models.MyModel(testing.tiny_backbone())
    return model, data.make_dataset(x, y_semi, batch_size=16)

def test_two_replicas_equal_one_device():
    result = mirrored_equivalence("test_my_model:make_my_model")["test_my_model:make_my_model"]
    assert result["copies_differ"] == 0.0 and result["weights_differ"] < 1e-5
```

Randomness inside a step (noise, augmentation, a random direction) is drawn per replica, so
a factory used here makes it deterministic or derives it from the sample indices.
"""

import json
import os
import subprocess
import sys

__all__ = ["mirrored_equivalence"]


def mirrored_equivalence(*specs, timeout=600):
    """Trains each `module:function` factory on two logical CPUs and on one, in a fresh
    process (tests/mirrored_worker.py).

    Returns:
        `{spec: {"num_replicas", "weights_differ", "loss_differ", "copies_differ"}}`.
    """
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mirrored_worker.py")
    completed = subprocess.run(
        [sys.executable, worker, *specs], capture_output=True, text=True, timeout=timeout
    )
    assert completed.returncode == 0, completed.stderr[-5000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])
