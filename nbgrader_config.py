"""nbgrader settings for Acceleration Lab; every value the pipeline relies on is set here."""
import os

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

c.CourseDirectory.course_id = "acceleration-lab"
# The course root is this repo; the demo and the tests pass --CourseDirectory.root to override it.
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "measurements"]

# What students see in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearSolutions.enforce_metadata = True

# Execution while autograding. The per-cell timeout lives on Execute (nbgrader's subclass of
# nbconvert's ExecutePreprocessor); a notebook must grade in 15 s in all, so 60 s per cell
# only ever stops a hung cell.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
c.Execute.execute_retries = 0

# Keep runaway output out of the gradebook and the feedback.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 50
