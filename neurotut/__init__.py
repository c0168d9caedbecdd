"""neurotut: 3D electron-microscopy neuron segmentation, end to end.

Modules (axis order is always z, y, x; channels first):

* :mod:`neurotut.config` - profile (quick/full), device, seeds, data directory
* :mod:`neurotut.io` - HDF5 volume specs (``file.h5:dataset``), atomic writes, safe checkpoint loading
* :mod:`neurotut.geometry` - z, y, x triples and boxes (crops), shared by every module
* :mod:`neurotut.data` - dataset registry and downloads, stacks to HDF5, SNEMI3D loaders, synthetic data
* :mod:`neurotut.affinity` - labels to affinity graphs (Superhuman offsets), masks, degradations
* :mod:`neurotut.agglomerate` - watershed + agglomeration with waterz (``neurotut segment``)
* :mod:`neurotut.metrics` - SNEMI3D adapted Rand error, VOI, boundary accuracy with its baseline
  (``neurotut evaluate``)
* :mod:`neurotut.models` - RSUNet and reversible (RevNet) blocks
* :mod:`neurotut.augment` - Superhuman augmentations (flips/transposes with affinity channels, defects)
* :mod:`neurotut.train_config` - what defines an affinity training run, per profile
* :mod:`neurotut.patches` - random augmented training patches with their affinity targets
* :mod:`neurotut.loss` - the class-rebalanced affinity loss
* :mod:`neurotut.batchnorm` - exact BatchNorm statistics for evaluation
* :mod:`neurotut.checkpoints` - affinity-network checkpoint files (read, load the model, export)
* :mod:`neurotut.train` - training loop with checkpoints that resume exactly (``neurotut train``)
* :mod:`neurotut.inference` - sliding-window prediction with bump blending (``neurotut predict``)
* :mod:`neurotut.experiments` - base vs reversible U-Nets (Koyama et al.'s Table 1)
* :mod:`neurotut.memory` - what a training step keeps for backward (bytes saved, CUDA peak)
* :mod:`neurotut.viz` - label colours, overlays, orthogonal views, slice animations
* :mod:`neurotut.ffn` - Flood-Filling Networks: partitions, coordinates, model, training, inference
"""

__version__ = "0.1.0"
