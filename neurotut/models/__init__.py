"""Neural network models for 3D EM segmentation (channels first, axes z, y, x).

* :mod:`neurotut.models.rsunet` - the residual symmetric U-Net of Superhuman, plain, checkpointed or
  with reversible blocks
* :mod:`neurotut.models.reversible` - additive-coupling reversible blocks (RevNet) and a reversible
  sequence whose backward pass reconstructs activations instead of storing them
"""
