"""ml_collections config files (see docs/running.md); a package so that files compose by imports."""
