"""``python -m autograder.collect``: an LMS download -> ``submitted/<student>/<assignment>/``."""
import sys

from autograder.collect.lms import main

if __name__ == "__main__":
    sys.exit(main())
