import sys

from studies.cli.main import main

sys.exit(main())
