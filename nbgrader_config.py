"""nbgrader settings for Acceleration Lab; every value the pipeline relies on is set here."""
c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

c.CourseDirectory.course_id = "acceleration-lab"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "measurements"]

# What students see in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearSolutions.enforce_metadata = True

# The sandbox that every process running student code gets: the grading kernel and the outside
# check's process obey the same limits (autograder/run/sandbox.py reads them from here). A
# notebook must grade in 15 s in all, so 60 s per cell only ever stops a hung cell.
c.Sandbox.memory_bytes = 4 * 2**30        # address space per process
c.Sandbox.processes = 64                  # processes and threads of the sandbox user
c.Sandbox.file_size_bytes = 64 * 2**20    # largest file it may write
c.Sandbox.scratch_bytes = 256 * 2**20     # all files it may write together (a tmpfs)
c.Sandbox.output_bytes = 100_000          # output kept per cell
c.Sandbox.cell_timeout_s = 60             # one cell, visible test or check
c.Sandbox.notebook_timeout_s = 300        # one notebook in the kernel
c.Sandbox.check_timeout_s = 240           # one notebook's outside check, restarts included
c.Execute.interrupt_on_timeout = True
c.Execute.execute_retries = 0

# Keep runaway output out of the gradebook and the feedback.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 50

# Autograding: nbgrader's steps, with two replaced (autograder/run/execute.py). The kernel runs
# in the sandbox and survives dead and hung cells; a test that writes to stderr keeps its points.
# nbgrader's CheckCellMetadata is left out of both passes: staging has already restored every
# cell's metadata from the release (autograder/collect/repair.py), and its schema check cost about
# 0.2 s a notebook each time.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
]
c.Autograde.autograde_preprocessors = [
    "autograder.run.execute.SandboxedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "autograder.run.execute.SaveAutoGradesKeepingStderr",
    "nbgrader.preprocessors.AssignLatePenalties",
]
