"""nbgrader settings for Acceleration Lab; every value the pipeline relies on is set here."""
import os

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

c.CourseDirectory.course_id = "acceleration-lab"
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

# Autograding: nbgrader's steps, with two replaced (autograder/execute.py). The kernel runs in a
# sandbox and survives dead and hung cells; a test that writes to stderr keeps its points.
c.Autograde.autograde_preprocessors = [
    "autograder.execute.SandboxedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "autograder.execute.SaveAutoGradesKeepingStderr",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.SandboxedExecute.output_bytes = 100_000
c.SandboxedExecute.memory_bytes = 4 * 2**30
c.SandboxedExecute.max_processes = 64
c.SandboxedExecute.file_size_bytes = 64 * 2**20
c.SandboxedExecute.notebook_timeout = 300
