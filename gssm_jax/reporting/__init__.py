"""Reading many runs back: seed statistics, paired comparisons, scaling fits and their figures."""
