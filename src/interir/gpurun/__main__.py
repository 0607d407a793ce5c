"""``python -m interir.gpurun [options]`` and ``python -m interir.gpurun join ...``."""

import sys

from interir.gpurun.run import main

sys.exit(main())
