"""The defaults every part of PawLab shares: one home for each number.

The tutorial's settings are PawLab's defaults: 160 px squares, batches of
32, and seed 1337 for splits, shuffling and weight initialisation. The
architectures' own recipes (epochs, learning rates, augmentation, fine-tuning)
live in core.runs.recipes; the data layer only needs the numbers below.
"""

IMAGE_SIZE = 160
BATCH_SIZE = 32
SEED = 1337
# With train/ and validation/ folders, test is this share of validation/ (per
# class); a single pool of photos gives this share to test and to validation.
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.2

# What the Train page and the CLI offer. 32 and 64 px train in seconds.
IMAGE_SIZES = (32, 64, 96, 128, 160, 192, 224)
BATCH_SIZES = (8, 16, 32, 64, 128)

# Where `python -m core serve` listens: this machine only, because the API has no authentication.
SERVE_HOST, SERVE_PORT = "127.0.0.1", 8000

# Exit statuses of `python -m core ...`, for every command module.
EXIT_FAILED = 1  # the command ran and failed (a run failed, a file was not classified...)
EXIT_USAGE = 2  # the command line asked for something impossible
