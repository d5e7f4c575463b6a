"""Process exit codes of `python -m gssm_jax.main`, shared with the launch scripts."""

EXIT_OK = 0  # the run is complete (re-running a complete workdir exits 0 at once)
EXIT_BAD_CONFIG = 2  # a config value was rejected before any work started
EXIT_PREEMPTED = 75  # sysexits EX_TEMPFAIL: a stop signal made it checkpoint and leave; run again
