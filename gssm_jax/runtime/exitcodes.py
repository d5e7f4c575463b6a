"""Process exit codes of `python -m gssm_jax.main`, shared with the launch scripts."""

EXIT_OK = 0  # the run is complete (re-running a complete workdir exits 0 at once)
# a bad flag, config value or file, workdir or data set; a resume that would change the experiment;
# no checkpoint that restores: one line naming it, before any work started
EXIT_BAD_CONFIG = 2
EXIT_PREEMPTED = 75  # sysexits EX_TEMPFAIL: a stop signal made it checkpoint and leave; run again
EXIT_INTERRUPTED = (
    130  # a second Ctrl-C: stopped at once, nothing saved; the last checkpoint resumes
)
