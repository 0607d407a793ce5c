"""One prepared run on a lent GPU machine: CUDA tests, speed table, a timed training run, scores.

``scripts/device_run.sh`` installs interir into a temporary site and calls
``python -m interir.gpurun``, which, inside a wall-clock budget (``--minutes``, default 8):

1. runs the CUDA tests (``pytest -m cuda``) and records their outcomes (:mod:`.cudatests`);
2. measures latency and peak memory of the benchmark models at each size, in fp32 and bf16, and
   the training throughput of the model it will train (:mod:`.bench`);
3. trains that model with the project's trainer (:func:`interir.engine.train.train`) for as many
   steps as the measured throughput fits in the time left, checkpointing about every minute
   (:mod:`.training`);
4. scores the trained weights, and the shipped default for comparison, on the fixed validation
   pairs, and writes the weights (in as few files as the return limits allow, :mod:`.weights`),
   the config, the metrics log, the training log and ``report.json`` to the output folder
   (:mod:`.report`).

Before the call, ``python -m interir.gpurun prepare`` (``scripts/device_prepare.sh``, :mod:`.prepare`)
fills the carried folders (wheels, training images) within what a device call may send.
The same code runs on the CPU with a tiny model (``--device cpu``), which the test suite does.
``python -m interir.gpurun join FILES... -o weights.safetensors`` joins weights that came back in
several files into one file that ``interir`` and ``scripts/ship_default.py`` read.
"""
