"""`python -m cgrpo_ros.cli ...` is the `cgrpo` command."""

import sys

from cgrpo_ros.cli.command import main

sys.exit(main())
