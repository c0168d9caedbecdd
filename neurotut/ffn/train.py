"""The previous edition's ``neurotut.ffn.train``: kept for one edition as thin re-exports.

FFN training now lives in :mod:`neurotut.ffn.train_config`, :mod:`neurotut.ffn.inputs`,
:mod:`neurotut.ffn.augmentation`, :mod:`neurotut.ffn.fov_policies`, :mod:`neurotut.ffn.examples`,
:mod:`neurotut.ffn.evaluation`, :mod:`neurotut.ffn.trainer`, :mod:`neurotut.ffn.checkpoints` and
:mod:`neurotut.ffn.summaries`; import from there. Nothing in neurotut imports this module.
"""

# kept for one edition: the previous edition's chapters import these from neurotut.ffn.train
from neurotut.ffn.augmentation import Augmentation, draw_augmentation  # noqa: F401
from neurotut.ffn.checkpoints import (  # noqa: F401
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    prune_checkpoints,
)
from neurotut.ffn.evaluation import EvalCounts, ExampleResult, evaluate, evaluate_examples  # noqa: F401
from neurotut.ffn.examples import ExampleStream, run_example, run_examples  # noqa: F401
from neurotut.ffn.fov_policies import (  # noqa: F401
    FixedMoves,
    MaxPredMoves,
    face_max_moves,
    fixed_move_order,
    make_policy,
)
from neurotut.ffn.inputs import (  # noqa: F401
    Example,
    TrainVolume,
    fov_slices,
    load_example,
    make_sampler,
    make_seed_canvas,
    soft_labels,
)
from neurotut.ffn.model import logit  # noqa: F401
from neurotut.ffn.summaries import SummaryLogger, center_slices  # noqa: F401
from neurotut.ffn.train_config import TrainConfig  # noqa: F401
from neurotut.ffn.trainer import Trainer, clip_gradient_entries  # noqa: F401
from neurotut.geometry import crop_centered  # noqa: F401
