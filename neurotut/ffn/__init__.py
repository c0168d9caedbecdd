"""Flood-Filling Networks (FFN), re-implemented from the description of google/ffn.

The package follows the original workflow, one module per step:

* :mod:`neurotut.ffn.partitions` - label volume -> partition volume (``compute_partitions.py``)
* :mod:`neurotut.ffn.coordinates` - partition volumes -> balanced training centres
  (``build_coordinates.py``)
* :mod:`neurotut.ffn.cli` - the ``neurotut ffn ...`` command line

Arrays are always z, y, x. Where an original flag is given in x, y, z, the command line says so and
converts it once.
"""
