"""The messages of the categoriser head's federation (the keys both sides read).

A head round is a Flower ``train`` message whose config holds :data:`HEAD_ROUND_KEY`:

``counts``  the device replies ``delta`` = float32[classes], how many of its labelled examples have each
            label (the server sums them once, for the class-balanced loss); ``num-examples`` = its examples.
``train``   ``arrays/weights`` is the global head (one flat float32 vector, :func:`vane.client.topic_head.
            head_layout`); the device trains it on its own labelled embeddings for :data:`EPOCHS_KEY`
            full-batch steps and replies ``delta`` = local − global, ``num-examples`` and ``train-loss``.

The config also names the head's shape (:data:`DIMS_KEY`, :data:`CLASSES_KEY`), the step
(:data:`LEARNING_RATE_KEY`, :data:`L2_KEY`) and, when the loss is class-balanced, the weight of each label
(:data:`CLASS_WEIGHTS_KEY`, from the summed counts). Nothing else crosses: no title, token or embedding.
"""

from __future__ import annotations

HEAD_ROUND_KEY = "head-round"
ROUND_COUNTS = "counts"
ROUND_TRAIN = "train"
DIMS_KEY = "head-dims"
CLASSES_KEY = "head-classes"
EPOCHS_KEY = "head-epochs"
LEARNING_RATE_KEY = "head-learning-rate"
L2_KEY = "head-l2"
CLASS_WEIGHTS_KEY = "head-class-weights"
