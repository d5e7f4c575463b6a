"""Experiment 1's debug sweep (with sweep.py:debug, sets of data_debug.py): 2 model sizes x 2
numbers of training sequences on one data point, 4 runs of a minute or so on a 2-core CPU."""


def get_grid():
    return {
        "data.alpha_x": [0.1],
        "model.emb_dim": [8, 32],
        "data.train_sequences": [128, 1024],
    }
