"""The authors' multitask network, trained their way (docs/fidelity.md).

Their preprocessing (drop the last 5 frames, zero-pad to 64, pad the ring to
128 sectors with copies of the boundary), their fixed augmentation (rolled
copies and 0.5/0.5 mixes added to the train split), Adam at 1e-4 with weight
decay 1e-5, batch 64, loss 1 x MSE (ms^2) + 10 x NLL.
"""

from lma_tf import config as lma_config


def authors_training(c):
    """The authors' data handling and optimisation, on any experiment config."""
    c.data.drop_last_frames = 5
    c.data.num_frames = 64
    c.data.num_sectors = 128
    c.data.sector_padding = "edge"
    c.data.augment_shift = False
    c.data.augment_mirror = False
    c.model.test_time_shifts = 1
    c.model.test_time_mirror = False
    c.data.mixup_alpha = 0.0
    c.data.noise_std = 0.0
    c.data.expand_shifts_scar = tuple(s for s in range(-50, 50, 5) if s)
    c.data.expand_shifts_scar_free = tuple(range(-32, 32, 10))
    c.data.expand_mixup_scar = 400
    c.data.expand_mixup_scar_free = 100
    c.train.batch_size = 64
    c.train.learning_rate = 1e-4
    c.train.weight_decay = 1e-5
    c.train.schedule = "constant"
    c.train.warmup_epochs = 0
    c.train.clipnorm = 0.0
    c.loss.tos_scale_ms = 1.0
    # A small network: 8 steps per tf.function call train it ~1.3-1.5x faster
    # on a 2-core CPU; XLA is slower there (`lma-tf benchmark train`).
    c.train.steps_per_execution = 8
    return c


def get_config():
    c = authors_training(lma_config.base_config())
    c.name = "xing2023"
    c.model.kind = "xing2023"
    c.loss.weights = {"tos": 1.0, "lma": 10.0}
    return c
