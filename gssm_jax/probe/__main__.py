import sys

from gssm_jax.probe.cli import main

sys.exit(main())
