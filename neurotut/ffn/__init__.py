"""Flood-Filling Networks (FFN), re-implemented from the description of google/ffn.

The package follows the original workflow and its map of names:

* preprocessing: :mod:`~neurotut.ffn.partitions` - label volume -> partition volume
  (``compute_partitions.py``); :mod:`~neurotut.ffn.coordinates` - partition volumes -> balanced
  training centres (``build_coordinates.py``)
* the network: :mod:`~neurotut.ffn.model` (``models/convstack_3d.py``); google/ffn's TensorFlow
  checkpoints in :mod:`~neurotut.ffn.tf_checkpoint` and :mod:`~neurotut.ffn.tf_model`;
  :mod:`~neurotut.ffn.checkpoints` - checkpoint files, for training and inference alike
* training (``train.py``, ``training/``): :mod:`~neurotut.ffn.train_config`,
  :mod:`~neurotut.ffn.inputs`, :mod:`~neurotut.ffn.augmentation`,
  :mod:`~neurotut.ffn.fov_policies`, :mod:`~neurotut.ffn.examples`,
  :mod:`~neurotut.ffn.evaluation` (``tracker.py``), :mod:`~neurotut.ffn.trainer`,
  :mod:`~neurotut.ffn.summaries`
* inference (``inference/``, ``run_inference.py``): :mod:`~neurotut.ffn.inference` (the canvas),
  :mod:`~neurotut.ffn.movement`, :mod:`~neurotut.ffn.seeds` (``seed.py``),
  :mod:`~neurotut.ffn.storage`, :mod:`~neurotut.ffn.request` (``inference.proto``, the request
  and running it), :mod:`~neurotut.ffn.segment` (a whole in-memory volume),
  :mod:`~neurotut.ffn.flood_recorder` (watching one object grow)
* :mod:`~neurotut.ffn.cli` - the ``neurotut ffn ...`` command line, one step per workflow step
* :mod:`~neurotut.ffn.originals`, :mod:`~neurotut.ffn.reproduce` - the original trained networks
  and the reproduction of google/ffn's published example

Arrays are always z, y, x. Where an original flag is given in x, y, z, the command line says so and
converts it once.
"""
