"""Blockwise prediction and segmentation of volumes larger than memory, scheduled by daisy.

The steps, each a daisy task over blocks of a zarr volume, resumable after an interruption:

* :mod:`neurotut.blockwise.predict`: raw -> affinities, equal to the in-memory sliding window;
* :mod:`neurotut.blockwise.fragments`: affinities -> watershed fragments (ids unique across
  blocks) and the region adjacency graph with mean-affinity statistics, in a graph database;
* :mod:`neurotut.blockwise.agglomerate`: the whole graph -> one fragment-to-segment table per
  threshold (mean-affinity agglomeration, as waterz does in memory);
* :mod:`neurotut.blockwise.relabel`: fragments + table -> the segmentation, block by block.

:mod:`neurotut.blockwise.schedule` holds the blocks and daisy bookkeeping they share.
"""
