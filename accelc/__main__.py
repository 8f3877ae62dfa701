import sys

from accelc.cli.main import main

sys.exit(main())
