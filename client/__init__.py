"""The on-device SDK. Never imports TensorFlow."""
