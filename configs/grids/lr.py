"""A learning-rate sweep with two model seeds (6 runs), for any run config."""


def get_grid():
    return {"optim.lr": [1e-3, 3e-3, 1e-2], "seed": [0, 1]}
