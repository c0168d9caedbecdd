import sys

from neurotut.cli import main

sys.exit(main())
