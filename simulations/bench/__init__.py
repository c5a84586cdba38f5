"""``vane sim bench …``: the benchmarks, each against its targets.

- :mod:`~vane.simulations.bench.model`: speed, size and footprint of the exported interest model;
- :mod:`~vane.simulations.bench.client`: latency, throughput, memory and import time of the device SDK;
- :mod:`~vane.simulations.bench.federation`: round time, memory and upload size of Flower simulations;
- :mod:`~vane.simulations.bench.history`: a million-visit browser-history import, in bounded memory;
- :mod:`~vane.simulations.bench.dashboard`: the dashboard's time to interactive over 10,000 events, in
  headless Chromium (:mod:`~vane.simulations.bench.browser`: the browser and ``vane client serve``);
- :mod:`~vane.simulations.bench.targets`: what each measure should reach;
- :mod:`~vane.simulations.bench.memory`: the process-tree memory sampler;
- :mod:`~vane.simulations.bench.inputs`: synthetic model inputs (random features, sticky sessions).

Importing this package is light: the workers that measure the device SDK never import TensorFlow.
"""
