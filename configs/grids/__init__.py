"""Grids for `python -m launch.submit --grid`: each file defines get_grid()."""
