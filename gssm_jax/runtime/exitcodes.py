"""Process exit codes of `python -m gssm_jax.main`, shared with the launch scripts (docs/faults.md)."""

EXIT_OK = 0  # the run is complete (re-running a complete workdir exits 0 at once)
# a bad flag, config value or file, workdir or data set; a resume that would change the experiment;
# no checkpoint that restores: one line naming it, before any work started
EXIT_BAD_CONFIG = 2
# sysexits EX_DATAERR: the loss or gradients stayed non-finite (optim.nonfinite); nothing non-finite
# was saved; a resume of the diverged run is refused with this code too
EXIT_DIVERGED = 65
EXIT_PEER_LOST = (
    69  # sysexits EX_UNAVAILABLE: another process of the run died; resume from the last checkpoint
)
EXIT_WRITE_FAILED = 74  # sysexits EX_IOERR: a checkpoint or metrics write failed (disk full, ...)
EXIT_PREEMPTED = 75  # sysexits EX_TEMPFAIL: a stop signal made it checkpoint and leave; run again
EXIT_INTERRUPTED = (
    130  # a second Ctrl-C: stopped at once, nothing saved; the last checkpoint resumes
)
EXIT_KILLED = 137  # 128 + SIGKILL, as a shell reports a task the scheduler or the kernel killed
# Codes after which the same command resumes where the run left off: the launcher retries these.
RETRYABLE = (EXIT_PREEMPTED, EXIT_PEER_LOST, EXIT_KILLED)
