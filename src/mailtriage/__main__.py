import sys

from mailtriage.cli import main

sys.exit(main())
