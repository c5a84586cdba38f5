"""The device SDK never pulls TensorFlow into the process."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_client_runtime_steps_without_importing_tensorflow(small_training_blob, tmp_path):
    model_path = tmp_path / "model.tflite"
    model_path.write_bytes(small_training_blob)
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import vane.client
        from vane.client.runtime import LiteModel
        from vane.shared.features import Features

        model = LiteModel.from_path({str(model_path)!r})
        spec = model.spec
        row = Features(
            np.ones((1, spec.max_categories_per_event), np.int32), np.ones(1, np.int32),
            np.ones((1, spec.tokens_per_title), np.int32), np.ones(1, np.int32), np.ones(1, np.int32),
        )
        out = model.step(row, *model.zero_state())
        assert out.interest.shape == (spec.num_categories,), out.interest.shape
        print("tensorflow" in sys.modules, "keras" in sys.modules)
        """
    )

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
