"""A family x width grid (docs/dashboards.md): with an optim.lr sweep beside it in one report,
the runs here have no optim.lr, and the report must still keep the families on separate lines."""


def get_grid():
    return {"model.family": ["transformer", "mamba"], "model.emb_dim": [16, 32, 64]}
